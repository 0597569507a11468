//! The dimensions a quota limits, and a request's cost in each of them. Neutral: which
//! provider limits which dimension, and under what name, is the provider side's business.
//!
//! It must not know any provider or header name.

use std::fmt;

/// One limited quantity, each counted per minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dimension {
    /// Requests per minute.
    Requests,
    /// Tokens per minute (prompt + output together).
    Tokens,
    /// Input tokens per minute (for a provider that limits input and output apart).
    InputTokens,
    /// Output tokens per minute (for a provider that limits input and output apart).
    OutputTokens,
}

impl Dimension {
    /// Every dimension, in index order.
    pub const ALL: [Dimension; 4] = [
        Dimension::Requests,
        Dimension::Tokens,
        Dimension::InputTokens,
        Dimension::OutputTokens,
    ];

    /// Position in per-dimension arrays.
    pub fn index(self) -> usize {
        match self {
            Dimension::Requests => 0,
            Dimension::Tokens => 1,
            Dimension::InputTokens => 2,
            Dimension::OutputTokens => 3,
        }
    }

    /// Short unit name for messages ("requests", "tokens", ...).
    pub fn unit(self) -> &'static str {
        match self {
            Dimension::Requests => "requests",
            Dimension::Tokens => "tokens",
            Dimension::InputTokens => "input tokens",
            Dimension::OutputTokens => "output tokens",
        }
    }
}

impl fmt::Display for Dimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/min", self.unit())
    }
}

/// What one request costs in every dimension.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cost([u64; 4]);

impl Cost {
    /// One request costing `tokens` tokens (prompt + admitted output).
    pub fn request(tokens: u64) -> Self {
        Cost([1, tokens, 0, 0])
    }

    /// Set the amount in one dimension.
    pub fn with(mut self, dimension: Dimension, amount: u64) -> Self {
        self.0[dimension.index()] = amount;
        self
    }

    /// The amount in one dimension.
    pub fn get(&self, dimension: Dimension) -> u64 {
        self.0[dimension.index()]
    }
}
