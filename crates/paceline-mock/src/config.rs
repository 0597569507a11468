//! Configuration of the simulated provider.
//!
//! Plain settings, the `--key` spec and their validation (errors name the flags users write). It
//! knows nothing of the server, and parses no command line: that is the `paceline` binary's.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

/// Everything the simulated provider can be told. `Default` is: listen on a free loopback port,
/// no limits, zero latency, no faults.
#[derive(Debug, Clone)]
pub struct MockConfig {
    /// Address to bind; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Requests per minute for every key (0 = unlimited).
    pub rpm: u64,
    /// Tokens per minute for every key (0 = unlimited).
    pub tpm: u64,
    /// Declared keys. When non-empty, only these keys are accepted.
    pub keys: Vec<KeySpec>,
    /// Caps the request bucket's capacity (default: the RPM).
    pub burst: Option<u64>,
    /// Caps the token bucket's capacity (default: the TPM).
    pub token_burst: Option<u64>,
    /// Credit per key in tokens (prompt + completion); once used up every call gets
    /// `insufficient_quota`. `None` = unlimited.
    pub quota_tokens: Option<u64>,
    /// Latency model.
    pub latency: LatencyConfig,
    /// Mean generated answer length in tokens (sampled uniformly in `[1, 2·mean]`).
    pub completion_tokens: u32,
    /// `max_tokens` assumed when a request has none (also what admission charges).
    pub default_max_tokens: u32,
    /// Fault probabilities.
    pub faults: FaultRates,
    /// Seed of every random choice; `None` picks one at start.
    pub seed: Option<u64>,
    /// Refund unused output tokens to the token bucket on completion (Anthropic-like).
    pub refund_unused: bool,
    /// Observe-only: admit everything, count what the limits would have refused.
    pub soft_limits: bool,
    /// How long a `stall` fault holds a response (it also ends at shutdown).
    pub stall_duration: Duration,
    /// Whether an injected fault is charged to the rate-limit buckets (default `true`).
    ///
    /// `true`: admission first, then the fault draw, so a faulted request has used its request
    /// and tokens, as a failure after admission does at a real provider; the conservative
    /// assumption for a client. `false`: the fault is drawn first and a faulted request is
    /// answered without touching any bucket (or the credit), with no rate-limit headers, even
    /// when the buckets are empty, like a provider whose fault or overload layer sits in front
    /// of its quota.
    pub faults_charge: bool,
    /// Process at most this many requests at once, the rest waiting in a FIFO queue (a
    /// self-hosted inference server); the latency model is then the service time once a slot
    /// is taken. `None` = no limit.
    pub slots: Option<usize>,
    /// How the Batch APIs' batches behave.
    pub batch: BatchConfig,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            rpm: 0,
            tpm: 0,
            keys: Vec::new(),
            burst: None,
            token_burst: None,
            quota_tokens: None,
            latency: LatencyConfig::default(),
            completion_tokens: 64,
            default_max_tokens: 4096,
            faults: FaultRates::default(),
            seed: None,
            refund_unused: false,
            soft_limits: false,
            stall_duration: Duration::from_secs(3600),
            faults_charge: true,
            slots: None,
            batch: BatchConfig::default(),
        }
    }
}

/// How the simulated batches behave.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchConfig {
    /// Requests each batch processes per second (of the mock's clock).
    pub speed: f64,
    /// Time spent validating (OpenAI), finalizing and cancelling.
    pub validation: Duration,
    /// The completion window: a batch not done by then expires.
    pub window: Duration,
    /// OpenAI's enqueued-token limit per model (`None`: unlimited).
    pub enqueued_tokens: Option<u64>,
    /// Anthropic's limit of requests in the processing queue (`None`: unlimited).
    pub queued_requests: Option<u64>,
    /// Share of processed requests that fail with a server error.
    pub fail_rate: f64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            speed: 1000.0,
            validation: Duration::from_secs(1),
            window: Duration::from_secs(24 * 3600),
            enqueued_tokens: None,
            queued_requests: None,
            fail_rate: 0.0,
        }
    }
}

/// Latency model: a log-normal time to first token plus a time per output token.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LatencyConfig {
    /// Mean of the log-normal base latency, in milliseconds.
    pub mean_ms: f64,
    /// Standard deviation of the base latency, in milliseconds (0 = constant).
    pub sd_ms: f64,
    /// Added per generated output token, in milliseconds.
    pub ms_per_token: f64,
}

/// Probability of each injected fault, drawn once per admitted request.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FaultRates {
    /// HTTP 500 `server_error`.
    pub fail_500: f64,
    /// HTTP 503 overloaded.
    pub fail_503: f64,
    /// HTTP 529 `overloaded_error` (Anthropic endpoint only).
    pub fail_529: f64,
    /// Connection closed before a complete response.
    pub reset: f64,
    /// Status 200 with only part of the body.
    pub truncate: f64,
    /// The response is held for `stall_duration`.
    pub stall: f64,
}

impl FaultRates {
    /// Check every probability is in `[0, 1]` and their sum at most 1; names the first bad flag.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let named = [
            ("--fail-500", self.fail_500),
            ("--fail-503", self.fail_503),
            ("--fail-529", self.fail_529),
            ("--reset", self.reset),
            ("--truncate", self.truncate),
            ("--stall", self.stall),
        ];
        for (flag, p) in named {
            if !(0.0..=1.0).contains(&p) {
                return Err(ConfigError::Probability { flag, value: p });
            }
        }
        let sum: f64 = named.iter().map(|(_, p)| p).sum();
        if sum > 1.0 + 1e-9 {
            return Err(ConfigError::ProbabilitySum(sum));
        }
        Ok(())
    }
}

/// One declared key: `NAME[:RPM[:TPM]]`. Missing limits fall back to `--rpm` / `--tpm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    /// The key itself (the bearer token clients send); also its name in stats.
    pub name: String,
    /// Requests per minute for this key (`None` = the global `--rpm`; 0 = unlimited).
    pub rpm: Option<u64>,
    /// Tokens per minute for this key (`None` = the global `--tpm`; 0 = unlimited).
    pub tpm: Option<u64>,
}

impl FromStr for KeySpec {
    type Err = ConfigError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| ConfigError::Key {
            value: spec.to_owned(),
            reason: reason.to_owned(),
        };
        let mut parts = spec.split(':');
        let name = parts.next().unwrap_or_default();
        if name.is_empty() {
            return Err(bad("the key name is empty"));
        }
        if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("the key name contains whitespace"));
        }
        let mut limit = |what: &str| -> Result<Option<u64>, ConfigError> {
            match parts.next() {
                None | Some("") => Ok(None),
                Some(v) => v
                    .parse::<u64>()
                    .map(Some)
                    .map_err(|_| bad(&format!("{what} {v:?} is not a whole number"))),
            }
        };
        let rpm = limit("RPM")?;
        let tpm = limit("TPM")?;
        if parts.next().is_some() {
            return Err(bad("expected NAME[:RPM[:TPM]]"));
        }
        Ok(Self {
            name: name.to_owned(),
            rpm,
            tpm,
        })
    }
}

/// A configuration value that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    /// A `--key` spec that does not parse.
    #[error("invalid --key {value:?}: {reason} (expected NAME[:RPM[:TPM]])")]
    Key {
        /// The spec as given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The same key declared twice.
    #[error("invalid --key: {0:?} is declared twice")]
    DuplicateKey(String),
    /// A fault probability outside `[0, 1]`.
    #[error("invalid {flag} {value}: a probability must be between 0 and 1")]
    Probability {
        /// The flag.
        flag: &'static str,
        /// The value given.
        value: f64,
    },
    /// Fault probabilities summing above 1.
    #[error("the fault probabilities sum to {0}, above 1")]
    ProbabilitySum(f64),
    /// A burst cap of zero.
    #[error("invalid {0} 0: a burst must be at least 1")]
    ZeroBurst(&'static str),
    /// A latency parameter that is negative or not finite.
    #[error("invalid {flag} {value}: must be a finite number >= 0")]
    Latency {
        /// The flag.
        flag: &'static str,
        /// The value given.
        value: f64,
    },
    /// `--slots` of 0 or above [`crate::slots::MAX_SLOTS`].
    #[error("invalid --slots {0}: must be between 1 and {max} (leave it out for no limit)", max = crate::slots::MAX_SLOTS)]
    Slots(usize),
    /// `--listen` that is not an address.
    #[error("invalid --listen {0:?}: expected HOST:PORT, e.g. 127.0.0.1:8089")]
    Listen(String),
    /// `--batch-speed` that is not a positive number.
    #[error("invalid --batch-speed {0}: requests per second must be a positive number")]
    BatchSpeed(f64),
}

impl MockConfig {
    /// Check the whole configuration; the error names the offending flag and value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.faults.validate()?;
        if !(self.batch.speed.is_finite() && self.batch.speed > 0.0) {
            return Err(ConfigError::BatchSpeed(self.batch.speed));
        }
        if !(0.0..=1.0).contains(&self.batch.fail_rate) {
            return Err(ConfigError::Probability {
                flag: "--batch-fail",
                value: self.batch.fail_rate,
            });
        }
        if self.burst == Some(0) {
            return Err(ConfigError::ZeroBurst("--burst"));
        }
        if self.token_burst == Some(0) {
            return Err(ConfigError::ZeroBurst("--token-burst"));
        }
        if let Some(n) = self.slots
            && !(1..=crate::slots::MAX_SLOTS).contains(&n)
        {
            return Err(ConfigError::Slots(n));
        }
        let latency = [
            ("--latency-ms", self.latency.mean_ms),
            ("--latency-sd", self.latency.sd_ms),
            ("--ms-per-token", self.latency.ms_per_token),
        ];
        for (flag, value) in latency {
            if !value.is_finite() || value < 0.0 {
                return Err(ConfigError::Latency { flag, value });
            }
        }
        let mut seen = std::collections::HashSet::new();
        for key in &self.keys {
            if !seen.insert(key.name.as_str()) {
                return Err(ConfigError::DuplicateKey(key.name.clone()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_specs() {
        let k: KeySpec = "sk-a".parse().unwrap();
        assert_eq!((k.rpm, k.tpm), (None, None));
        let k: KeySpec = "sk-a:60".parse().unwrap();
        assert_eq!((k.rpm, k.tpm), (Some(60), None));
        let k: KeySpec = "sk-a:60:1000".parse().unwrap();
        assert_eq!(
            (k.name.as_str(), k.rpm, k.tpm),
            ("sk-a", Some(60), Some(1000))
        );
        let k: KeySpec = "sk-a::1000".parse().unwrap();
        assert_eq!((k.rpm, k.tpm), (None, Some(1000)));
        for bad in ["", ":60", "a:x", "a:1:2:3", "a:1:-2", "a b"] {
            let err = bad.parse::<KeySpec>().unwrap_err().to_string();
            assert!(err.contains("--key"), "{err}");
        }
    }

    #[test]
    fn validation_names_the_flag() {
        let mut c = MockConfig::default();
        assert_eq!(c.validate(), Ok(()));
        c.faults.reset = 1.5;
        assert!(c.validate().unwrap_err().to_string().contains("--reset"));
        c.faults.reset = 0.6;
        c.faults.stall = 0.6;
        assert!(matches!(c.validate(), Err(ConfigError::ProbabilitySum(_))));
        let c = MockConfig {
            burst: Some(0),
            ..MockConfig::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("--burst"));
        let c = MockConfig {
            slots: Some(0),
            ..MockConfig::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::Slots(0)));
        assert!(c.validate().unwrap_err().to_string().contains("--slots 0"));
    }
}
