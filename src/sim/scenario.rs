//! What a simulated provider is like ([`Scenario`]): its header dialect, limits, latency, slots,
//! faults, a second client and a lowered limit. The bound of a run against it is
//! [`super::oracle`]'s.
//!
//! Plain settings: they must not know the transport or the client.

use std::time::Duration;

/// Which rate-limit headers the provider sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderStyle {
    /// `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, resets as Go durations.
    OpenAi,
    /// `anthropic-ratelimit-{requests,input-tokens,output-tokens}-*`, resets as RFC 3339
    /// instants with whole seconds; output tokens admitted at `max_tokens` and corrected to
    /// the output produced.
    Anthropic,
    /// Azure OpenAI: `x-ratelimit-remaining-{requests,tokens}` only (no limit, no reset).
    Azure,
    /// None at all (a self-hosted OpenAI-compatible server); 429s carry `retry-after`.
    None,
}

impl HeaderStyle {
    /// A short name for cell labels.
    pub fn name(self) -> &'static str {
        match self {
            HeaderStyle::OpenAi => "openai",
            HeaderStyle::Anthropic => "anthropic",
            HeaderStyle::Azure => "azure",
            HeaderStyle::None => "none",
        }
    }
}

/// One dimension's limit: units per minute and the bucket's capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Units per minute.
    pub per_minute: u64,
    /// Most units at once.
    pub capacity: u64,
}

/// How long the provider takes to answer once it works on a request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LatencyModel {
    /// Always this long.
    Fixed(Duration),
    /// Log-normal with this mean and σ of the underlying normal (a heavy tail for σ ≈ 1).
    LogNormal {
        /// The mean.
        mean: Duration,
        /// σ of ln(latency).
        sigma: f64,
    },
    /// Normal base (clamped at 10 % of its mean) plus a time per output token.
    PerToken {
        /// Mean of the base.
        base: Duration,
        /// Standard deviation of the base.
        sd: Duration,
        /// Added per output token.
        per_token: Duration,
    },
}

/// Failures the provider injects.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Faults {
    /// Probability of a 503 answer.
    pub p503: f64,
    /// Whether a 503 is charged to the buckets (drawn after admission) or not (drawn before).
    pub charged: bool,
    /// Probability of a connection reset after admission (charged).
    pub reset: f64,
}

/// Another client using the same key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SecondClient {
    /// Its share of the requests dimension's sustained rate.
    pub share: f64,
}

/// A simulated provider and the job sent to it.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Which headers it sends.
    pub headers: HeaderStyle,
    /// The requests dimension, if limited.
    pub requests: Option<Limit>,
    /// The tokens dimension (Anthropic: input and output tokens each), if limited.
    pub tokens: Option<Limit>,
    /// Answer latency once a slot works on the request.
    pub latency: LatencyModel,
    /// How long a refusal (429) or an uncharged fault takes to come back.
    pub refusal_latency: Duration,
    /// How long a connection took to open, as the transport reports it once the first request
    /// has gone ([`crate::upstream::Transport::connect_time`]); `None`: no connection is
    /// modelled, and the probe keeps its default step (as for a distant provider).
    pub connect: Option<Duration>,
    /// At most this many requests worked on at once; the rest wait in a FIFO queue.
    pub slots: Option<usize>,
    /// Injected failures.
    pub faults: Faults,
    /// Another client on the same key.
    pub second_client: Option<SecondClient>,
    /// At this time (from the start) every limit is scaled by the factor.
    pub lower_limit: Option<(Duration, f64)>,
    /// Mean output tokens of an answer (uniform in `[1, 2·mean]`, capped by `max_tokens`).
    pub mean_output: u64,
    /// Seed of every draw.
    pub seed: u64,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            headers: HeaderStyle::OpenAi,
            requests: None,
            tokens: None,
            latency: LatencyModel::Fixed(Duration::ZERO),
            refusal_latency: Duration::from_millis(5),
            connect: None,
            slots: None,
            faults: Faults::default(),
            second_client: None,
            lower_limit: None,
            mean_output: 32,
            seed: 1,
        }
    }
}
