//! What a provider reported about one key's limits, in the quota's own terms: for each
//! [`Dimension`], the limit, what is left of it, when it is whole again and how finely that
//! time was written, plus the wait the provider asked for.
//!
//! This is the neutral report the quota is calibrated from ([`super::Quota::observe`]). It
//! knows no header, no provider and no wire format: reading an answer into it is the provider
//! side's work, and every field is optional because providers report subsets.

use super::dimension::Dimension;
use std::time::Duration;

/// What one answer said about the limits. Every field optional: providers report subsets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LimitSnapshot {
    /// Requests dimension.
    pub requests: DimensionReading,
    /// Tokens dimension (where a provider has several token limits on it, the most restrictive
    /// one in effect).
    pub tokens: DimensionReading,
    /// Input tokens dimension.
    pub input_tokens: DimensionReading,
    /// Output tokens dimension.
    pub output_tokens: DimensionReading,
    /// The wait the provider asked for before the next request, as it said it (uncapped).
    pub retry_after: Option<Duration>,
    /// How finely the wait was written (whole seconds for a wait in integer seconds).
    pub retry_after_resolution: Option<Duration>,
}

impl LimitSnapshot {
    /// True when the answer said nothing about limits.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The reading of one dimension.
    pub fn reading(&self, dimension: Dimension) -> DimensionReading {
        match dimension {
            Dimension::Requests => self.requests,
            Dimension::Tokens => self.tokens,
            Dimension::InputTokens => self.input_tokens,
            Dimension::OutputTokens => self.output_tokens,
        }
    }

    /// The reading of one dimension, to fill in.
    pub fn reading_mut(&mut self, dimension: Dimension) -> &mut DimensionReading {
        match dimension {
            Dimension::Requests => &mut self.requests,
            Dimension::Tokens => &mut self.tokens,
            Dimension::InputTokens => &mut self.input_tokens,
            Dimension::OutputTokens => &mut self.output_tokens,
        }
    }

    /// True when no dimension's limit or remaining count was stated (a retry hint may be).
    pub fn states_no_limit(&self) -> bool {
        Dimension::ALL.iter().all(|&d| {
            let r = self.reading(d);
            r.limit.is_none() && r.remaining.is_none()
        })
    }
}

/// One dimension's reading: the limit, what is left of it, and when it resets.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DimensionReading {
    /// The limit for the window.
    pub limit: Option<u64>,
    /// What is left of the limit.
    pub remaining: Option<u64>,
    /// Time until the dimension is back to its full limit, relative to the answer's time.
    pub reset: Option<Duration>,
    /// How finely the provider wrote `reset`: the unit of its last digit (an instant in whole
    /// seconds: 1 s; a duration in milliseconds: 1 ms). The true reset lies within this of the
    /// value read, either way; a burst inferred from it must allow for that.
    pub reset_resolution: Option<Duration>,
}
