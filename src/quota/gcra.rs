//! One dimension of a quota as a GCRA (generic cell rate algorithm) cell.
//!
//! State is a single "theoretical arrival time" (`tat`), in nanoseconds since the quota's epoch.
//! With an emission interval `T` (time per unit at the sustained rate) and a tolerance `τ`
//! (the burst, as time: `burst × T`), the bucket level at time `t` is `(τ − (tat − t)) / T` units,
//! at most the burst. A reservation of cost `c` made at `now`:
//!
//! * may go at `g = max(now, tat − max(0, τ − c·T))` — when the level has risen to `c`, or, for a
//!   cost larger than the whole burst, when the bucket is full (the bucket then goes into debt,
//!   which is how providers admit a request larger than their burst but within their limit);
//! * commits `tat ← max(tat, g) + c·T`.
//!
//! Over any interval of length `w`, the units admitted never exceed `burst + w / T` (plus one
//! oversized request admitted from a full bucket) — the property test in `quota::tests` checks it.
//! Arithmetic is integer nanoseconds with `T` rounded up, so rounding only ever slows us down.
//!
//! It owns one cell's arithmetic and must not know dimensions, providers, clocks or locks: the
//! caller passes `now` and holds the lock.

/// Nanoseconds since a quota's epoch.
pub type Nanos = u64;

/// One rate-limited dimension (e.g. requests per minute).
#[derive(Debug, Clone)]
pub struct Gcra {
    /// Emission interval: nanoseconds per unit at the sustained rate.
    interval: u64,
    /// Burst tolerance in nanoseconds (`burst × interval`, less the jitter margin).
    tolerance: u64,
    /// The provider's whole burst in nanoseconds (`burst × interval`): what its counts
    /// (`remaining`, a 429) are measured against.
    capacity: u64,
    /// Theoretical arrival time.
    tat: Nanos,
    /// Lowest tat a refund may leave: what the provider last said was left (see
    /// [`Gcra::drain_to`]). Capacity it said is gone is never given back by our own refunds.
    floor: Nanos,
}

impl Gcra {
    /// A cell for `per_minute` units per minute with at most `burst` units at once (both ≥ 1).
    pub fn new(per_minute: u64, burst: u64) -> Self {
        Self::with_margin(per_minute, burst, 0)
    }

    /// Like [`Gcra::new`], with the tolerance shortened by `margin_ns` (but never below one
    /// unit): a request admitted here at `g` still conforms at the provider when it arrives
    /// up to `margin_ns` earlier or later relative to the others (network jitter).
    pub fn with_margin(per_minute: u64, burst: u64, margin_ns: u64) -> Self {
        let mut cell = Gcra {
            interval: 1,
            tolerance: 0,
            capacity: 0,
            tat: 0,
            floor: 0,
        };
        cell.set_rate(per_minute, burst, margin_ns);
        cell
    }

    /// Change the rate, burst and margin, keeping the current tat. Returns whether the rate
    /// changed (the tat then counts units at the old rate).
    pub fn set_rate(&mut self, per_minute: u64, burst: u64, margin_ns: u64) -> bool {
        let per_minute = per_minute.max(1);
        let burst = burst.clamp(1, per_minute);
        let interval = 60_000_000_000u64.div_ceil(per_minute);
        let capacity = interval.saturating_mul(burst);
        let tolerance = capacity.saturating_sub(margin_ns).max(interval);
        let changed = interval != self.interval;
        self.interval = interval;
        self.tolerance = tolerance;
        self.capacity = capacity;
        changed
    }

    /// Nanoseconds per unit.
    pub fn interval(&self) -> u64 {
        self.interval
    }

    /// The burst in force (after the margin), in whole units.
    pub fn burst(&self) -> u64 {
        self.tolerance / self.interval
    }

    /// Sustained rate in units per second.
    pub fn per_second(&self) -> f64 {
        1e9 / self.interval as f64
    }

    /// Current theoretical arrival time.
    pub fn tat(&self) -> Nanos {
        self.tat
    }

    fn cost_ns(&self, cost: u64) -> u64 {
        cost.saturating_mul(self.interval)
    }

    /// Earliest time at or after `now` when `cost` units may go.
    pub fn earliest(&self, cost: u64, now: Nanos) -> Nanos {
        let slack = self.tolerance.saturating_sub(self.cost_ns(cost));
        now.max(self.tat.saturating_sub(slack))
    }

    /// Commit `cost` units going at `at` (which must be ≥ `earliest(cost, _)`); returns the new tat.
    pub fn commit(&mut self, cost: u64, at: Nanos) -> Nanos {
        self.tat = self.tat.max(at).saturating_add(self.cost_ns(cost));
        self.tat
    }

    /// Give back `units` (a settled request cost less than reserved), never below `now` (a
    /// bucket holds no more than full) nor below what the provider last reported.
    pub fn refund(&mut self, units: u64, now: Nanos) {
        let back = self.cost_ns(units);
        let lowest = now.max(self.floor).min(self.tat);
        self.tat = self.tat.saturating_sub(back).max(lowest);
    }

    /// Charge `units` more than reserved (a settled request cost more).
    pub fn charge(&mut self, units: u64, now: Nanos) {
        self.tat = self.tat.max(now).saturating_add(self.cost_ns(units));
    }

    /// Level (units available) at `at`, given a tat; negative while in debt.
    pub fn level_at(&self, tat: Nanos, at: Nanos) -> f64 {
        (self.tolerance as f64 - (tat as f64 - at as f64)) / self.interval as f64
    }

    /// Level at `at` given a tat, measured against the provider's whole burst (without the
    /// jitter margin): what its `remaining` would say.
    pub fn provider_level_at(&self, tat: Nanos, at: Nanos) -> f64 {
        (self.capacity as f64 - (tat as f64 - at as f64)) / self.interval as f64
    }

    /// Move the tat earlier by up to `ns` (capacity the provider reports it did not charge),
    /// never below `now` (a bucket holds no more than full); what the provider said was left
    /// before no longer holds refunds back. Returns how far it moved.
    pub fn bring_forward(&mut self, ns: u64, now: Nanos) -> u64 {
        let before = self.tat;
        self.tat = self.tat.saturating_sub(ns).max(now).min(before);
        self.floor = self.floor.min(self.tat);
        before - self.tat
    }

    /// Set the tat so that the level at `now` is `level` (at most the burst: a full bucket).
    /// Returns how far the tat moved (later is positive).
    pub fn keep_level(&mut self, level: f64, now: Nanos) -> i64 {
        let before = self.tat;
        if level >= self.tolerance as f64 / self.interval as f64 {
            self.tat = self.tat.min(now);
        } else {
            let behind = self.tolerance as f64 - level * self.interval as f64;
            self.tat = now.saturating_add(behind.max(0.0) as u64);
        }
        i64::try_from(self.tat).unwrap_or(i64::MAX) - i64::try_from(before).unwrap_or(i64::MAX)
    }

    /// Move the tat later by `ns` (usage by someone else that the provider reported).
    pub fn push_back(&mut self, ns: u64, now: Nanos) {
        self.tat = self.tat.max(now).saturating_add(ns);
    }

    /// Make the provider's bucket hold at most `units` at time `at`, as it reported (a 429:
    /// empty until `at`; a `remaining` header). The count is the provider's, against its whole
    /// burst: the jitter margin stays off it, so the next request still goes `margin` later
    /// than the provider's bucket would allow. Later refunds do not undo it.
    pub fn drain_to(&mut self, units: u64, at: Nanos) {
        self.drain_to_owing(units, 0, at);
    }

    /// Make the provider's bucket hold at most `units` at `at` with `owed` units reserved to
    /// go after `at` already in the tat: they come out of what it holds then. Only the
    /// provider's word holds refunds back: a reservation among the owed that is given back
    /// later returns its units.
    pub fn drain_to_owing(&mut self, units: u64, owed: u64, at: Nanos) {
        let said = at
            .saturating_add(self.capacity)
            .saturating_sub(self.cost_ns(units));
        self.tat = self.tat.max(said.saturating_add(self.cost_ns(owed)));
        self.floor = self.floor.max(said);
    }

    /// [`Gcra::drain_to`] a level known finer than whole units (a replay of what went on a
    /// bucket whose refill is known).
    pub fn drain_to_level(&mut self, level: f64, at: Nanos) {
        let behind = (self.capacity as f64 - level.max(0.0) * self.interval as f64).max(0.0);
        let target = at.saturating_add(behind as u64);
        self.tat = self.tat.max(target);
        self.floor = self.floor.max(target);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn burst_then_paced() {
        // 60/min = 1/s, burst 3.
        let mut g = Gcra::new(60, 3);
        let mut times = Vec::new();
        for _ in 0..6 {
            let at = g.earliest(1, 0);
            g.commit(1, at);
            times.push(at);
        }
        assert_eq!(times, vec![0, 0, 0, SEC, 2 * SEC, 3 * SEC]);
    }

    #[test]
    fn a_drain_leaves_room_for_what_is_reserved_after_it() {
        // 60/min, burst 5. A reservation for 3 s is in the tat when a refusal says 1 unit is
        // there at 1 s, nothing admitted after the refused request: the reserved one takes it,
        // so the next unit is due at 2 s.
        let mut cell = Gcra::new(60, 5);
        cell.commit(1, 3 * SEC);
        cell.drain_to_owing(1, 1, SEC);
        assert_eq!(cell.earliest(1, SEC), 2 * SEC);
        // The reservation is given back: its unit returns, not beyond the refusal's word.
        cell.refund(1, SEC);
        assert_eq!(cell.earliest(1, SEC), SEC);
        // Without the reservation after it, the unit is there at 1 s.
        let mut cell = Gcra::new(60, 5);
        cell.drain_to_owing(1, 0, SEC);
        assert_eq!(cell.earliest(1, SEC), SEC);
    }

    #[test]
    fn margin_shortens_the_burst_not_the_rate() {
        let mut g = Gcra::with_margin(600, 10, 25_000_000); // 10/s, burst 10, 25 ms margin
        assert_eq!(g.burst(), 9);
        let mut last = 0;
        for _ in 0..30 {
            last = g.earliest(1, 0);
            g.commit(1, last);
        }
        // 9 at once, the 10th 25 ms later (the margin), then one per 100 ms.
        assert_eq!(last, 25_000_000 + 20 * 100_000_000);
    }

    #[test]
    fn oversized_cost_waits_for_full_bucket() {
        let mut g = Gcra::new(600, 10); // 10/s, burst 10
        let at = g.earliest(25, 0);
        assert_eq!(at, 0);
        g.commit(25, at);
        // in debt: the next unit waits until the level is back to 1.
        let next = g.earliest(1, 0);
        assert_eq!(next, g.tat() - g.tolerance + g.interval());
        // the next oversized request waits until full again.
        assert_eq!(g.earliest(25, 0), g.tat());
    }

    #[test]
    fn refund_and_charge_move_tat() {
        let mut g = Gcra::new(60, 1);
        g.commit(10, 0);
        assert_eq!(g.tat(), 10 * SEC);
        g.refund(4, 0);
        assert_eq!(g.tat(), 6 * SEC);
        g.charge(2, 0);
        assert_eq!(g.tat(), 8 * SEC);
        // refunds never move the tat below now (a bucket is at most full).
        g.refund(100, 5 * SEC);
        assert_eq!(g.tat(), 5 * SEC);
    }

    #[test]
    fn refunds_never_undo_what_the_provider_reported() {
        let mut g = Gcra::new(60, 5);
        g.commit(1, 0);
        g.commit(1, 0);
        // the provider says: empty until 3 s.
        g.drain_to(0, 3 * SEC);
        let floor = g.tat();
        // a reservation cancelled afterwards does not bring back capacity.
        g.refund(2, 0);
        assert_eq!(g.tat(), floor);
    }

    #[test]
    fn drain_empties_bucket_at_time() {
        let mut g = Gcra::new(60, 5);
        g.drain_to(0, 10 * SEC);
        // empty at 10 s: one unit available 1 s later.
        assert_eq!(g.earliest(1, 0), 11 * SEC);
    }

    /// The table `quota.lua` is checked against too (`tests/redis_quota.rs`): the same
    /// operations on the in-process cell give the same times.
    #[test]
    fn conformance_table() {
        let cases: serde_json::Value =
            serde_json::from_str(include_str!("gcra_cases.json")).expect("valid table");
        for case in cases.as_array().expect("a list of cases") {
            let name = &case["name"];
            let n = |v: &serde_json::Value| v.as_u64().expect("a number");
            let mut cell = Gcra::with_margin(
                n(&case["per_minute"]),
                n(&case["burst"]),
                n(&case["margin_ns"]),
            );
            let mut paused = 0;
            for (i, op) in case["ops"].as_array().expect("ops").iter().enumerate() {
                let now = n(&op["now"]);
                let amount = op["amount"].as_i64().expect("amount");
                match op["op"].as_str().expect("op") {
                    "admit" => {
                        let cost = amount.unsigned_abs();
                        let go = cell.earliest(cost, now).max(paused);
                        cell.commit(cost, go);
                        assert_eq!(go, n(&op["go"]), "{name} op {i}: go");
                    }
                    "settle" if amount < 0 => cell.refund(amount.unsigned_abs(), now),
                    "settle" => cell.charge(amount.unsigned_abs(), now),
                    "pause" => {
                        let until = n(&op["until"]);
                        paused = paused.max(until);
                        cell.drain_to(amount.unsigned_abs(), until);
                    }
                    other => panic!("unknown op {other}"),
                }
                assert_eq!(cell.tat(), n(&op["tat"]), "{name} op {i}: tat");
            }
        }
    }
}
