//! `--via auto --deadline`: when the batch path must hand what is left to live requests.
//!
//! What is left (per model: requests and the tokens admission charges) would take the live
//! path [`live_seconds`] at the model's limits — the same arithmetic as `plan`'s live time,
//! each model paced by its own quota, so the slowest sets the time. The hand-over is due at
//! `deadline − live time × 1.25 − margin`: a quarter more than the estimate (which `plan`
//! holds to within 10 % of a real run), and the margin for the provider to cancel its batches
//! and for their finished requests to be collected. A model with no limit known cannot be
//! timed: its rest is due live at once.
//!
//! Arithmetic only: it must not send, read the store or know the Batch APIs beyond the
//! [`Handover`] question.

use super::{LiveLimits, drain_seconds};
use crate::offline::handover::{Handover, Remainder};
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// The live estimate is stretched by this factor before it is taken from the deadline.
pub const LIVE_SLACK: f64 = 1.25;

/// The live limits of each model: configured for all, else learned by an earlier run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelLimits {
    /// Given for every model (`--rpm`/`--tpm`, the config's keys; all keys together).
    pub configured: LiveLimits,
    /// Learned and stored by an earlier run, per model.
    pub learned: HashMap<String, LiveLimits>,
}

impl ModelLimits {
    /// The limits of `model`, if any is known.
    pub fn of(&self, model: &str) -> Option<LiveLimits> {
        if self.configured != LiveLimits::default() {
            return Some(self.configured);
        }
        self.learned
            .get(model)
            .copied()
            .filter(|l| *l != LiveLimits::default())
    }

    /// Whether any limit is known at all.
    pub fn any(&self) -> bool {
        self.configured != LiveLimits::default()
            || self.learned.values().any(|l| *l != LiveLimits::default())
    }
}

/// Seconds the live path needs for `remainder` (`None`: a model has no limit known).
pub fn live_seconds(remainder: &[Remainder], limits: &ModelLimits) -> Option<f64> {
    let mut slowest = 0.0f64;
    for r in remainder {
        let l = limits.of(&r.model)?;
        let requests = l.rpm.map_or(0.0, |rpm| drain_seconds(r.requests, rpm));
        let tokens = l.tpm.map_or(0.0, |tpm| drain_seconds(r.tokens, tpm));
        slowest = slowest.max(requests).max(tokens);
    }
    Some(slowest)
}

/// The hand-over rule of one run.
#[derive(Debug, Clone)]
pub struct DeadlineRule {
    /// When the job must have ended.
    pub deadline: Instant,
    /// The live limits.
    pub limits: ModelLimits,
    /// Time kept for cancelling the batches and collecting them.
    pub margin: Duration,
}

impl Handover for DeadlineRule {
    fn due(&self, remainder: &[Remainder]) -> Instant {
        let Some(live) = live_seconds(remainder, &self.limits) else {
            return Instant::now();
        };
        let needed = Duration::try_from_secs_f64(live * LIVE_SLACK)
            .unwrap_or(Duration::MAX)
            .saturating_add(self.margin);
        self.deadline
            .checked_sub(needed)
            .unwrap_or_else(Instant::now)
    }

    fn cancel_wait(&self) -> Duration {
        self.margin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn left(model: &str, requests: u64, tokens: u64) -> Remainder {
        Remainder {
            model: model.into(),
            requests,
            tokens,
        }
    }

    #[test]
    fn the_slowest_model_and_dimension_set_the_live_time() {
        let limits = ModelLimits {
            configured: LiveLimits {
                rpm: Some(600),
                tpm: Some(60_000),
            },
            learned: HashMap::new(),
        };
        // 1,010 requests at 10/s: 100 s; 61,000 tokens at 1,000/s: 60 s.
        let one = [left("a", 1_010, 61_000)];
        assert_eq!(live_seconds(&one, &limits), Some(100.0));
        // A second model is paced by its own quota: in parallel, the slower decides.
        let two = [left("a", 1_010, 61_000), left("b", 10, 241_000)];
        assert_eq!(live_seconds(&two, &limits), Some(240.0));
        assert_eq!(live_seconds(&[], &limits), Some(0.0));
    }

    #[test]
    fn learned_limits_serve_their_model_only() {
        let limits = ModelLimits {
            configured: LiveLimits::default(),
            learned: HashMap::from([(
                "a".to_string(),
                LiveLimits {
                    rpm: Some(60),
                    tpm: None,
                },
            )]),
        };
        assert!(limits.any());
        assert_eq!(live_seconds(&[left("a", 31, 0)], &limits), Some(30.0));
        assert_eq!(live_seconds(&[left("b", 31, 0)], &limits), None);
        assert!(!ModelLimits::default().any());
    }

    #[tokio::test(start_paused = true)]
    async fn due_keeps_the_slack_and_the_margin_before_the_deadline() {
        let start = Instant::now();
        let rule = DeadlineRule {
            deadline: start + Duration::from_secs(1_000),
            limits: ModelLimits {
                configured: LiveLimits {
                    rpm: Some(600),
                    tpm: None,
                },
                learned: HashMap::new(),
            },
            margin: Duration::from_secs(50),
        };
        // 410 requests: 40 s live, 50 s stretched, plus the 50 s margin.
        let due = rule.due(&[left("a", 410, 0)]);
        assert_eq!(due - start, Duration::from_secs(900));
        // As the batches finish, the hand-over moves later; nothing left: at the margin.
        assert!(rule.due(&[left("a", 110, 0)]) > due);
        assert_eq!(rule.due(&[]) - start, Duration::from_secs(950));
        // More than the time there is: due now (the past), so the rest goes live at once.
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(rule.due(&[left("a", 100_000, 0)]) <= Instant::now());
        // A model without a known limit cannot be timed: at once.
        assert!(rule.due(&[]) > Instant::now());
        let unknown = DeadlineRule {
            limits: ModelLimits::default(),
            ..rule
        };
        assert!(unknown.due(&[left("a", 1, 0)]) <= Instant::now());
        assert_eq!(unknown.cancel_wait(), Duration::from_secs(50));
    }
}
