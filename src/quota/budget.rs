//! What a span of traffic used of the budget a limit allows: the one definition behind every
//! figure paceline prints about rate against a limit (the run's summary, `paceline status`,
//! `paceline report` and the gateway's live page).
//!
//! A provider enforces a per-minute limit as a bucket: it starts full (`burst` units) and
//! refills at `per_minute / 60` units a second. Over a span of `t` seconds a client may
//! therefore send up to `burst + per_minute × t / 60`: [`Budget::allowance`]. Comparing an
//! average rate with the refill rate alone says a short run "broke" its limit when it only spent
//! the full bucket it started with; comparing what was sent with the allowance does not.
//!
//! ```
//! use paceline::quota::budget::{Budget, Throughput};
//! use std::time::Duration;
//!
//! // 60 requests/min with a bucket of 60: 80 sent in 20 s is 36 % above the refill rate, and
//! // exactly the whole budget (60 at once, then 1 a second).
//! let budget = Budget { per_minute: 60, burst: 60 };
//! let run = Throughput { requests: 80, span: Duration::from_secs(20), ..Throughput::default() };
//! assert_eq!(run.requests_per_s(), 4.0);
//! assert_eq!(budget.allowance(run.span), 80.0);
//! assert_eq!(budget.used_percent(run.requests, run.span), 100.0);
//! ```

use std::time::Duration;

/// A per-minute limit as the provider enforces it: a bucket of `burst` refilled at
/// `per_minute` a minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Units per minute (the refill rate).
    pub per_minute: u64,
    /// Units the full bucket holds.
    pub burst: u64,
}

impl Budget {
    /// The most units the limit lets through over `span`: the full bucket plus its refill.
    pub fn allowance(&self, span: Duration) -> f64 {
        self.burst as f64 + self.per_minute as f64 * span.as_secs_f64() / 60.0
    }

    /// `used` as a share of [`Budget::allowance`] over `span`, in percent (0 when nothing is
    /// allowed and nothing used).
    pub fn used_percent(&self, used: u64, span: Duration) -> f64 {
        let allowed = self.allowance(span);
        if allowed <= 0.0 {
            return if used == 0 { 0.0 } else { f64::INFINITY };
        }
        used as f64 * 100.0 / allowed
    }

    /// The sum of two limits (two keys' budgets together).
    pub fn plus(self, other: Budget) -> Budget {
        Budget {
            per_minute: self.per_minute + other.per_minute,
            burst: self.burst + other.burst,
        }
    }
}

/// What a run sent: attempts, the tokens the provider reported using, and the span from its
/// first send to its last answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Throughput {
    /// Attempts sent (every attempt spends a request of the budget, a retried one too).
    pub requests: u64,
    /// Prompt (input) tokens used, as the provider reported them.
    pub input_tokens: u64,
    /// Completion (output) tokens used, as the provider reported them.
    pub output_tokens: u64,
    /// First send to last answer.
    pub span: Duration,
}

impl Throughput {
    /// Tokens used, input and output.
    pub fn tokens(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }

    /// Attempts per second over the span (0 for an empty span).
    pub fn requests_per_s(&self) -> f64 {
        per(self.requests, self.span, 1.0)
    }

    /// Tokens per minute over the span (0 for an empty span).
    pub fn tokens_per_min(&self) -> f64 {
        per(self.tokens(), self.span, 60.0)
    }
}

fn per(amount: u64, span: Duration, unit_secs: f64) -> f64 {
    let secs = span.as_secs_f64();
    if secs <= 0.0 {
        0.0
    } else {
        amount as f64 * unit_secs / secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_then_its_refill() {
        let b = Budget {
            per_minute: 600,
            burst: 5,
        };
        assert_eq!(b.allowance(Duration::ZERO), 5.0);
        assert_eq!(b.allowance(Duration::from_secs(30)), 305.0);
        assert!((b.used_percent(55, Duration::from_secs(5)) - 100.0).abs() < 1e-9);
        let none = Budget {
            per_minute: 0,
            burst: 0,
        };
        assert_eq!(none.used_percent(0, Duration::from_secs(1)), 0.0);
        assert!(none.used_percent(1, Duration::from_secs(1)).is_infinite());
    }

    #[test]
    fn rates_over_the_span() {
        let t = Throughput {
            requests: 30,
            input_tokens: 600,
            output_tokens: 300,
            span: Duration::from_millis(1500),
        };
        assert_eq!(t.requests_per_s(), 20.0);
        assert_eq!(t.tokens_per_min(), 36_000.0);
        assert_eq!(Throughput::default().requests_per_s(), 0.0);
    }
}
