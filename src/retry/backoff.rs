//! Backoff: how long a retry waits ([`BackoffPolicy`]).
//!
//! "Full jitter" (AWS Architecture Blog, "Exponential Backoff and Jitter"): a uniform draw in
//! `[0, min(cap, base·2^(attempt−1))]` — unless the server said when to come back. Then its
//! hint is waited out, spread by up to a quarter of it (never more than that draw's ceiling)
//! so that requests refused together do not come back together, as the official SDKs take a
//! `retry-after` as given instead of drawing up to a second for a 50 ms hint. The hint is not
//! capped: the server knows when the limit resets, and waiting less only earns another 429.
//! It must not know why an attempt failed nor where the retry waits (the engine's delayed
//! queue).

use std::time::Duration;

/// Exponential backoff with full jitter, bounded by a cap and a number of attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// The first retry's ceiling (default 1 s).
    pub base: Duration,
    /// The largest backoff ceiling (default 60 s); a server hint may exceed it.
    pub cap: Duration,
    /// Attempts allowed in all, the first one included (default 8).
    pub max_attempts: u32,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
            max_attempts: 8,
        }
    }
}

/// A uniform draw in `[0, most]`.
fn up_to(most: Duration, rng: &mut impl rand::Rng) -> Duration {
    let nanos = u64::try_from(most.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.random_range(0..=nanos))
}

impl BackoffPolicy {
    /// The wait before retrying after failed attempt number `attempt` (1 for the first attempt;
    /// 0 is treated as 1): a uniform draw in `[0, min(cap, base·2^(attempt−1))]` from `rng`;
    /// or, when the server gave a hint, the hint plus a uniform draw in
    /// `[0, min(hint / 4, that ceiling)]`. The hint is not capped.
    ///
    /// Whether another attempt is allowed at all is [`BackoffPolicy::exhausted`]'s question.
    pub fn delay(
        &self,
        attempt: u32,
        server_hint: Option<Duration>,
        rng: &mut impl rand::Rng,
    ) -> Duration {
        let ceiling = self.ceiling(attempt);
        match server_hint {
            None => up_to(ceiling, rng),
            Some(hint) => hint + up_to((hint / 4).min(ceiling), rng),
        }
    }

    /// True when `attempts_made` attempts leave none to make.
    pub fn exhausted(&self, attempts_made: u32) -> bool {
        attempts_made >= self.max_attempts
    }

    /// `min(cap, base·2^(attempt−1))`, saturating at `cap`.
    fn ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.max(1) - 1;
        1u32.checked_shl(doublings)
            .and_then(|factor| self.base.checked_mul(factor))
            .map_or(self.cap, |ceiling| ceiling.min(self.cap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    #[test]
    fn backoff_ceilings_and_exhaustion() {
        let policy = BackoffPolicy::default();
        let cases = [
            (0, Duration::from_secs(1)),
            (1, Duration::from_secs(1)),
            (2, Duration::from_secs(2)),
            (3, Duration::from_secs(4)),
            (6, Duration::from_secs(32)),
            (7, Duration::from_secs(60)),
            (40, Duration::from_secs(60)),
            (u32::MAX, Duration::from_secs(60)),
        ];
        for (attempt, ceiling) in cases {
            assert_eq!(policy.ceiling(attempt), ceiling, "attempt {attempt}");
        }
        assert!(!policy.exhausted(0));
        assert!(!policy.exhausted(7));
        assert!(policy.exhausted(8));
        assert!(policy.exhausted(9));
    }

    #[test]
    fn backoff_is_seeded_and_spreads() {
        let policy = BackoffPolicy::default();
        let mut a = SmallRng::seed_from_u64(7);
        let mut b = SmallRng::seed_from_u64(7);
        let draws: Vec<Duration> = (0..200).map(|_| policy.delay(5, None, &mut a)).collect();
        let again: Vec<Duration> = (0..200).map(|_| policy.delay(5, None, &mut b)).collect();
        assert_eq!(draws, again);
        let ceiling = Duration::from_secs(16);
        assert!(draws.iter().all(|d| *d <= ceiling));
        assert!(draws.iter().any(|d| *d < ceiling / 4));
        assert!(draws.iter().any(|d| *d > ceiling * 3 / 4));
    }

    #[test]
    fn hint_above_cap_wins() {
        let policy = BackoffPolicy::default();
        let mut rng = SmallRng::seed_from_u64(1);
        let hint = Duration::from_secs(600);
        let delay = policy.delay(3, Some(hint), &mut rng);
        // attempt 3's ceiling is 4 s: the spread is at most that.
        assert!(
            delay >= hint && delay <= hint + Duration::from_secs(4),
            "{delay:?}"
        );
    }

    #[test]
    fn a_short_hint_is_waited_out_not_drawn_up_to_a_second() {
        let policy = BackoffPolicy::default();
        let mut rng = SmallRng::seed_from_u64(11);
        let hint = Duration::from_millis(50);
        for _ in 0..100 {
            let delay = policy.delay(1, Some(hint), &mut rng);
            assert!(
                delay >= hint && delay <= Duration::from_micros(62_500),
                "{delay:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn backoff_bounds(
            seed in any::<u64>(),
            attempt in 0u32..100,
            hint_ms in proptest::option::of(0u64..200_000),
            base_ms in 1u64..5_000,
            cap_ms in 1u64..120_000,
        ) {
            let policy = BackoffPolicy {
                base: Duration::from_millis(base_ms),
                cap: Duration::from_millis(cap_ms),
                max_attempts: 8,
            };
            let hint = hint_ms.map(Duration::from_millis);
            let mut rng = SmallRng::seed_from_u64(seed);
            let delay = policy.delay(attempt, hint, &mut rng);
            let ceiling = policy.base.min(policy.cap);
            match hint {
                Some(hint) => {
                    prop_assert!(delay >= hint);
                    prop_assert!(delay <= hint + (hint / 4).min(policy.cap));
                    if attempt <= 1 {
                        prop_assert!(delay <= hint + (hint / 4).min(ceiling));
                    }
                }
                None => {
                    prop_assert!(delay <= policy.cap);
                    if attempt <= 1 {
                        prop_assert!(delay <= ceiling);
                    }
                }
            }
        }
    }
}
