//! Latency model: log-normal time to first token plus a fixed time per output token.
//!
//! It draws durations only: it never sleeps.

use crate::config::LatencyConfig;
use rand::rngs::SmallRng;
use rand_distr::{Distribution, LogNormal};
use std::time::Duration;

/// Draw the base latency (time to first token) for one request.
pub fn base(config: &LatencyConfig, rng: &mut SmallRng) -> Duration {
    let mean = config.mean_ms;
    let sd = config.sd_ms;
    if mean <= 0.0 {
        return Duration::ZERO;
    }
    if sd <= 0.0 {
        return Duration::from_secs_f64(mean / 1000.0);
    }
    // Log-normal with the given mean and standard deviation of the latency itself.
    let sigma2 = (1.0 + (sd * sd) / (mean * mean)).ln();
    let mu = mean.ln() - sigma2 / 2.0;
    match LogNormal::new(mu, sigma2.sqrt()) {
        Ok(dist) => Duration::from_secs_f64(dist.sample(rng).clamp(0.0, 3_600_000.0) / 1000.0),
        Err(_) => Duration::from_secs_f64(mean / 1000.0),
    }
}

/// Time spent generating `tokens` output tokens.
pub fn per_tokens(config: &LatencyConfig, tokens: u64) -> Duration {
    Duration::from_secs_f64((config.ms_per_token * tokens as f64 / 1000.0).clamp(0.0, 3_600.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn zero_and_constant() {
        let mut rng = SmallRng::seed_from_u64(1);
        assert_eq!(base(&LatencyConfig::default(), &mut rng), Duration::ZERO);
        let c = LatencyConfig {
            mean_ms: 250.0,
            sd_ms: 0.0,
            ms_per_token: 2.0,
        };
        assert_eq!(base(&c, &mut rng), Duration::from_millis(250));
        assert_eq!(per_tokens(&c, 10), Duration::from_millis(20));
    }

    #[test]
    fn lognormal_mean_is_close() {
        let mut rng = SmallRng::seed_from_u64(42);
        let c = LatencyConfig {
            mean_ms: 100.0,
            sd_ms: 50.0,
            ms_per_token: 0.0,
        };
        let n = 20_000;
        let total: f64 = (0..n)
            .map(|_| base(&c, &mut rng).as_secs_f64() * 1000.0)
            .sum();
        let mean = total / f64::from(n);
        assert!((95.0..105.0).contains(&mean), "{mean}");
    }
}
