//! `paceline mock`: arguments and glue for the simulated provider.
//!
//! It turns flags into a `MockConfig` and must not know how the mock works; `paceline_mock` knows
//! nothing of it.

use clap::Args;
use paceline_mock::{self as mock, ConfigError, FaultRates, KeySpec, LatencyConfig, MockConfig};
use std::net::SocketAddr;
use std::process::ExitCode;

/// Arguments of `paceline mock`.
#[derive(Debug, Clone, Args)]
pub struct MockArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8089")]
    pub listen: String,
    /// Requests per minute for every key (0 = unlimited).
    #[arg(long, default_value_t = 0)]
    pub rpm: u64,
    /// Tokens per minute for every key (0 = unlimited). Admission charges prompt tokens +
    /// max_tokens × n (embeddings: input tokens).
    #[arg(long, default_value_t = 0)]
    pub tpm: u64,
    /// Declare a key `NAME[:RPM[:TPM]]` (repeatable). When given, only declared keys are accepted.
    #[arg(long = "key", value_name = "NAME[:RPM[:TPM]]")]
    pub keys: Vec<String>,
    /// Cap the request bucket's capacity (e.g. 60,000 RPM enforced as 1,000 at once).
    #[arg(long)]
    pub burst: Option<u64>,
    /// Cap the token bucket's capacity (default: the TPM).
    #[arg(long)]
    pub token_burst: Option<u64>,
    /// Credit per key in tokens; once used, every call gets 429 insufficient_quota.
    #[arg(long)]
    pub quota_tokens: Option<u64>,
    /// Mean latency to the first token, in milliseconds (log-normal).
    #[arg(long, default_value_t = 0.0)]
    pub latency_ms: f64,
    /// Standard deviation of that latency, in milliseconds.
    #[arg(long, default_value_t = 0.0)]
    pub latency_sd: f64,
    /// Extra milliseconds per output token (streams spread their chunks over it).
    #[arg(long, default_value_t = 0.0)]
    pub ms_per_token: f64,
    /// Mean answer length in tokens (uniform in [1, 2·MEAN], capped by max_tokens).
    #[arg(long, default_value_t = 64)]
    pub completion_tokens: u32,
    /// max_tokens assumed (and charged at admission) when a request has none.
    #[arg(long, default_value_t = 4096)]
    pub default_max_tokens: u32,
    /// Probability of an HTTP 500.
    #[arg(long, default_value_t = 0.0)]
    pub fail_500: f64,
    /// Probability of an HTTP 503.
    #[arg(long, default_value_t = 0.0)]
    pub fail_503: f64,
    /// Probability of an HTTP 529 overloaded_error (Anthropic endpoint only).
    #[arg(long, default_value_t = 0.0)]
    pub fail_529: f64,
    /// Probability of closing the connection without a complete response.
    #[arg(long, default_value_t = 0.0)]
    pub reset: f64,
    /// Probability of a 200 whose body (or stream) is cut short.
    #[arg(long, default_value_t = 0.0)]
    pub truncate: f64,
    /// Probability of holding the response for an hour.
    #[arg(long, default_value_t = 0.0)]
    pub stall: f64,
    /// Seed of every random choice (default: random).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Refund unused output tokens to the token bucket on completion (Anthropic-like).
    #[arg(long)]
    pub refund_unused: bool,
    /// Admit everything; count requests the limits would have refused in admitted_beyond_limit.
    #[arg(long)]
    pub soft_limits: bool,
    /// Whether an injected fault is charged to the rate-limit buckets. true (the default):
    /// admission first, then the fault draw, so a 500/503/529/reset/truncate/stall has used its
    /// request and tokens, as a failure after admission does at a real provider — the
    /// conservative assumption for a client, and what every published figure was measured
    /// with. false: the fault is drawn first and answered without touching any bucket or the
    /// credit, with no rate-limit headers, even when the buckets are empty (a provider whose
    /// fault or overload layer sits in front of its quota). Stats count faults either way.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub faults_charge: bool,
    /// Process at most N requests at once, like a self-hosted inference server (llama.cpp, vLLM,
    /// TGI, Ollama): further requests wait in a first-in, first-out queue (no error, no
    /// rate-limit headers of its own) and the latency flags give the service time once a slot is
    /// taken, so throughput flattens at N ÷ service time while latency grows with the queue.
    /// Rate limits, when set, apply before the queue. /_mock/stats shows the queue under
    /// "slots". Default: no limit.
    #[arg(long, value_name = "N")]
    pub slots: Option<usize>,
    /// Batch APIs: requests each batch processes per second.
    #[arg(long, default_value_t = 1000.0)]
    pub batch_speed: f64,
    /// Batch APIs: how long a batch validates (OpenAI), finalizes and cancels.
    #[arg(long, default_value = "1s", value_parser = crate::time::parse_duration)]
    pub batch_validation: std::time::Duration,
    /// Batch APIs: the completion window; a batch not done by then expires.
    #[arg(long, default_value = "24h", value_parser = crate::time::parse_duration)]
    pub batch_window: std::time::Duration,
    /// Batch APIs: OpenAI's enqueued-token limit per model (a batch that would pass it fails
    /// with token_limit_exceeded). Default: unlimited.
    #[arg(long, value_name = "TOKENS")]
    pub batch_enqueued_tokens: Option<u64>,
    /// Batch APIs: Anthropic's limit of requests in the processing queue (a Message Batch that
    /// would pass it is refused with 429). Default: unlimited.
    #[arg(long, value_name = "REQUESTS")]
    pub batch_queued_requests: Option<u64>,
    /// Batch APIs: probability that a processed request fails with a server error.
    #[arg(long, default_value_t = 0.0)]
    pub batch_fail: f64,
}

impl TryFrom<&MockArgs> for MockConfig {
    type Error = ConfigError;

    fn try_from(args: &MockArgs) -> Result<Self, Self::Error> {
        let listen: SocketAddr = args
            .listen
            .parse()
            .map_err(|_| ConfigError::Listen(args.listen.clone()))?;
        let keys = args
            .keys
            .iter()
            .map(|k| k.parse::<KeySpec>())
            .collect::<Result<Vec<_>, _>>()?;
        let config = MockConfig {
            listen,
            rpm: args.rpm,
            tpm: args.tpm,
            keys,
            burst: args.burst,
            token_burst: args.token_burst,
            quota_tokens: args.quota_tokens,
            latency: LatencyConfig {
                mean_ms: args.latency_ms,
                sd_ms: args.latency_sd,
                ms_per_token: args.ms_per_token,
            },
            completion_tokens: args.completion_tokens,
            default_max_tokens: args.default_max_tokens,
            faults: FaultRates {
                fail_500: args.fail_500,
                fail_503: args.fail_503,
                fail_529: args.fail_529,
                reset: args.reset,
                truncate: args.truncate,
                stall: args.stall,
            },
            seed: args.seed,
            refund_unused: args.refund_unused,
            soft_limits: args.soft_limits,
            faults_charge: args.faults_charge,
            slots: args.slots,
            batch: mock::BatchConfig {
                speed: args.batch_speed,
                validation: args.batch_validation,
                window: args.batch_window,
                enqueued_tokens: args.batch_enqueued_tokens,
                queued_requests: args.batch_queued_requests,
                fail_rate: args.batch_fail,
            },
            ..MockConfig::default()
        };
        config.validate()?;
        Ok(config)
    }
}

/// Start the simulated provider, print `listening on http://ADDR`, and serve until interrupted.
pub async fn run(args: MockArgs) -> anyhow::Result<ExitCode> {
    let config = MockConfig::try_from(&args)?;
    let handle = mock::start(config).await?;
    super::announce(handle.addr())?;
    super::terminated().await;
    handle.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: MockArgs,
    }

    fn config(argv: &[&str]) -> Result<MockConfig, ConfigError> {
        let w = Wrapper::try_parse_from(std::iter::once("mock").chain(argv.iter().copied()))
            .map_err(|e| ConfigError::Listen(e.to_string()))?;
        MockConfig::try_from(&w.args)
    }

    #[test]
    fn flags_map_to_config() {
        let c = config(&[
            "--listen",
            "127.0.0.1:0",
            "--rpm",
            "60",
            "--tpm",
            "1000",
            "--key",
            "a:5:50",
            "--key",
            "b",
            "--burst",
            "3",
            "--fail-500",
            "0.1",
            "--seed",
            "7",
            "--soft-limits",
        ])
        .unwrap();
        assert_eq!(
            (c.rpm, c.tpm, c.burst, c.seed),
            (60, 1000, Some(3), Some(7))
        );
        assert_eq!(c.keys.len(), 2);
        assert_eq!(c.keys[0].rpm, Some(5));
        assert_eq!(c.faults.fail_500, 0.1);
        assert!(c.soft_limits && !c.refund_unused);
        assert_eq!((c.completion_tokens, c.default_max_tokens), (64, 4096));
        assert!(c.faults_charge, "faults are charged by default");
        assert_eq!(c.slots, None);
        assert_eq!(config(&["--slots", "4"]).map(|c| c.slots), Ok(Some(4)));
    }

    #[test]
    fn faults_charge_takes_a_value() {
        assert!(!config(&["--faults-charge", "false"]).unwrap().faults_charge);
        assert!(config(&["--faults-charge", "true"]).unwrap().faults_charge);
        assert!(config(&["--faults-charge=false"]).is_ok_and(|c| !c.faults_charge));
        assert!(config(&["--faults-charge", "maybe"]).is_err());
    }

    #[test]
    fn bad_values_name_the_flag_and_value() {
        let err = config(&["--key", "a:lots"]).unwrap_err().to_string();
        assert!(err.contains("--key") && err.contains("a:lots"), "{err}");
        let err = config(&["--listen", "nowhere"]).unwrap_err().to_string();
        assert!(err.contains("--listen") && err.contains("nowhere"), "{err}");
        let err = config(&["--stall", "2"]).unwrap_err().to_string();
        assert!(err.contains("--stall"), "{err}");
        let err = config(&["--slots", "0"]).unwrap_err().to_string();
        assert!(err.contains("--slots 0"), "{err}");
    }
}
