//! `paceline run --config paceline.toml`: the file as written ([`RawRunConfig`]), validated
//! with `TryFrom` into [`RunConfig`]; every mistake is reported with the file, the line and the
//! key. The flags of `run` are applied over the validated settings by `cli::run`.
//!
//! It must not know the gateway's keys (`crate::gateway::config`) nor read the keys it names.
//!
//! ```toml
//! base_url = "https://api.openai.com/v1"   # optional
//! provider = "openai"       # optional: openai | anthropic | azure | openai-compatible
//!                           # (default: inferred from base_url)
//! api_version = "2024-10-21"  # optional, Azure's api-version
//!
//! [[keys]]
//! env = "OPENAI_KEY_A"      # the environment variable holding the key (never the key itself)
//! rpm = 500                 # optional: requests per minute
//! tpm = 200000              # optional: tokens per minute
//!
//! [[keys]]
//! env = "OPENAI_KEY_B"
//!
//! timeout = "600s"          # optional: per attempt (--timeout)
//! max_attempts = 8          # optional (--max-attempts)
//! concurrency = 64          # optional: a fixed number in flight (--concurrency)
//! default_max_tokens = 4096 # optional (--default-max-tokens)
//!
//! otlp_endpoint = "http://127.0.0.1:4318"  # optional: export traces over OTLP/HTTP (--otlp-endpoint)
//!
//! [redis]                   # optional: distributed mode (flags --redis, --processes override)
//! url = "redis://cache:6379"
//! processes = 4             # processes sharing the keys: 1/4 of each limit while Redis is down
//!
//! [[prices]]                # optional: over the shipped price table (plan, --via batch/auto)
//! model = "gpt-4o-mini"     # a model it has: give only the prices that differ
//! input = 0.12              # US dollars per million tokens
//!
//! [[prices]]
//! model = "llama-3.1-70b"   # a model it lacks (matched as a prefix): all four prices
//! provider = "openai-compatible"
//! input = 0.6
//! output = 0.6
//! batch_input = 0.3
//! batch_output = 0.3
//! ```
//!
//! The names are the gateway's too (`crate::gateway::config`): one `paceline.toml` serves both
//! commands. The settings only the gateway has (`listen`, `max_wait`, `[[clients]]`,
//! `[[models]]`, …) are accepted here and left alone, and `upstream`, the gateway's old name
//! of `base_url`, is read as it.

use super::{ConfigError, KeySource, Provenance, RawConfig, RawKey, RedisSection};
use crate::provider::Provider;
use serde::Deserialize;
use std::path::Path;

/// The file as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRunConfig {
    /// `base_url`: the provider's base URL.
    pub base_url: Option<String>,
    /// `provider` (default: inferred from the base URL).
    pub provider: Option<String>,
    /// `api_version` (Azure).
    pub api_version: Option<String>,
    /// `[[keys]]`.
    #[serde(default)]
    pub keys: Vec<RawKey>,
    /// `timeout`, per attempt.
    pub timeout: Option<String>,
    /// `max_attempts` per request.
    pub max_attempts: Option<u32>,
    /// `concurrency`: a fixed number of requests in flight.
    pub concurrency: Option<usize>,
    /// `default_max_tokens`.
    pub default_max_tokens: Option<u64>,
    /// `[redis]`: distributed mode.
    pub redis: Option<RedisSection>,
    /// `[[prices]]`: entries over the shipped price table.
    #[serde(default)]
    pub prices: Vec<PriceEntry>,
    /// `upstream`: the gateway's old name of `base_url`, read as it.
    pub upstream: Option<String>,
    /// `otlp_endpoint`: the OpenTelemetry collector's base URL.
    pub otlp_endpoint: Option<String>,
    /// The settings only `paceline serve` has, accepted so that one file serves both commands
    /// and not read (any other unknown name is still an error).
    pub listen: Option<toml::Value>,
    /// See [`RawRunConfig::listen`].
    pub max_wait: Option<toml::Value>,
    /// See [`RawRunConfig::listen`].
    pub drain_timeout: Option<toml::Value>,
    /// See [`RawRunConfig::listen`].
    pub body_limit_mb: Option<toml::Value>,
    /// See [`RawRunConfig::listen`].
    pub workers: Option<toml::Value>,
    /// See [`RawRunConfig::listen`].
    pub admin_key_env: Option<toml::Value>,
    /// See [`RawRunConfig::listen`].
    pub admin_listen: Option<toml::Value>,
    /// See [`RawRunConfig::listen`].
    pub clients: Option<toml::Value>,
    /// See [`RawRunConfig::listen`].
    pub models: Option<toml::Value>,
    /// Where the values were written.
    #[serde(skip)]
    pub provenance: Provenance,
}

/// A `[[prices]]` entry: prices of a model over the shipped table's (only those given), or of a
/// model it lacks (then all four). US dollars per million tokens.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceEntry {
    /// The model, matched exactly or as the longest prefix of a request's model.
    pub model: String,
    /// The provider (for people).
    pub provider: Option<String>,
    /// Live input.
    pub input: Option<f64>,
    /// Live output.
    pub output: Option<f64>,
    /// Batched input.
    pub batch_input: Option<f64>,
    /// Batched output.
    pub batch_output: Option<f64>,
    /// The day the prices were read (for people).
    pub read_on: Option<String>,
    /// Where they were read (for people).
    pub page: Option<String>,
}

impl PriceEntry {
    /// The prices given, with their names.
    pub fn given(&self) -> [(&'static str, Option<f64>); 4] {
        [
            ("input", self.input),
            ("output", self.output),
            ("batch_input", self.batch_input),
            ("batch_output", self.batch_output),
        ]
    }
}

impl RawConfig for RawRunConfig {
    fn provenance_mut(&mut self) -> &mut Provenance {
        &mut self.provenance
    }
}

/// A validated configuration of `run`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunConfig {
    /// Provider base URL, if set.
    pub base_url: Option<String>,
    /// The provider, if set (else inferred from the base URL).
    pub provider: Option<Provider>,
    /// Azure's `api-version`, if set.
    pub api_version: Option<String>,
    /// Upstream keys.
    pub keys: Vec<KeySource>,
    /// Per-attempt timeout, if set.
    pub timeout: Option<std::time::Duration>,
    /// Attempts per request, if set.
    pub max_attempts: Option<u32>,
    /// A fixed number of requests in flight, if set.
    pub concurrency: Option<usize>,
    /// Output tokens assumed when a request sets none, if set.
    pub default_max_tokens: Option<u64>,
    /// Distributed mode, if configured.
    pub redis: Option<RedisSection>,
    /// Price entries over the shipped table.
    pub prices: Vec<PriceEntry>,
    /// Where traces go, if configured.
    pub otlp_endpoint: Option<crate::telemetry::otlp::Endpoint>,
}

impl RunConfig {
    /// Read and validate a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        RawRunConfig::load(path)?.try_into()
    }
}

impl TryFrom<RawRunConfig> for RunConfig {
    type Error = ConfigError;

    fn try_from(raw: RawRunConfig) -> Result<Self, Self::Error> {
        let at = &raw.provenance;
        let keys = super::keys(raw.keys, at)?;
        let provider = super::provider("provider", raw.provider.as_deref(), at)?;
        if raw
            .api_version
            .as_deref()
            .is_some_and(|v| v.trim().is_empty())
        {
            return Err(at.invalid(
                "api_version",
                "must not be empty: give Azure's api-version, such as 2024-10-21, or leave it out",
            ));
        }
        let base_url = match (raw.base_url, raw.upstream) {
            (Some(_), Some(_)) => {
                return Err(at.invalid(
                    "upstream",
                    "is the old name of base_url: give only base_url",
                ));
            }
            (None, Some(old)) => {
                tracing::warn!("{}", super::UPSTREAM_RENAMED);
                Some(old)
            }
            (url, None) => url,
        };
        if raw.max_attempts == Some(0) {
            return Err(at.invalid("max_attempts", "must be at least 1"));
        }
        if raw.concurrency == Some(0) {
            return Err(at.invalid(
                "concurrency",
                "must be at least 1 (leave it out for the adaptive bound)",
            ));
        }
        let timeout = match raw.timeout.as_deref() {
            Some(text) => Some(super::duration(
                "timeout",
                Some(text),
                Default::default(),
                at,
            )?),
            None => None,
        };
        for (i, p) in raw.prices.iter().enumerate() {
            if p.model.trim().is_empty() {
                return Err(at.invalid(
                    format!("prices[{i}].model"),
                    "must name a model (or the prefix of its names)",
                ));
            }
            for (name, value) in p.given() {
                if value.is_some_and(|v| !v.is_finite() || v < 0.0) {
                    return Err(at.invalid(
                        format!("prices[{i}].{name}"),
                        "must be a number of US dollars per million tokens, at least 0",
                    ));
                }
            }
        }
        Ok(RunConfig {
            base_url,
            provider,
            api_version: raw.api_version,
            keys,
            timeout,
            max_attempts: raw.max_attempts,
            concurrency: raw.concurrency,
            default_max_tokens: raw.default_max_tokens,
            redis: raw.redis.map(|r| r.validate(at)).transpose()?,
            prices: raw.prices,
            otlp_endpoint: super::otlp_endpoint(raw.otlp_endpoint.as_deref(), at)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigFile;
    use crate::quota::{Dimension, QuotaConfig};

    fn parse(text: &str) -> Result<RunConfig, ConfigError> {
        RawRunConfig::from_file(ConfigFile::new("p.toml", text))?.try_into()
    }

    #[test]
    fn parses_keys_with_limits() {
        let text = "base_url = \"http://127.0.0.1:1/v1\"\n[[keys]]\nenv = \"A\"\nrpm = 10\n[[keys]]\nenv = \"B\"\n";
        let config = parse(text).unwrap();
        assert_eq!(config.base_url.as_deref(), Some("http://127.0.0.1:1/v1"));
        assert_eq!(config.keys.len(), 2);
        assert_eq!(
            config.keys[0]
                .limits
                .get(Dimension::Requests)
                .map(|l| l.per_minute),
            Some(10)
        );
        assert_eq!(config.keys[1].limits, QuotaConfig::default());
    }

    #[test]
    fn parses_the_redis_section() {
        let text = "[redis]\nurl = \"redis://cache:6379\"\nprocesses = 4\n";
        let config = parse(text).unwrap();
        let redis = config.redis.unwrap();
        assert_eq!(redis.url.as_deref(), Some("redis://cache:6379"));
        assert_eq!(redis.processes, Some(4));
        let err = parse("[redis]\nurll = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("p.toml"));
        let err = parse("[redis]\nurl = \"redis://x\"\nprocesses = 0\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "config p.toml:3: redis.processes: must be at least 1"
        );
        let err = parse("[redis]\nshare = 1.5\n").unwrap_err().to_string();
        assert!(err.starts_with("config p.toml:2: redis.share: "), "{err}");
    }

    #[test]
    fn errors_name_file_and_field() {
        let err = parse("[[keys]]\nenv = \"sk-abc\"\n").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("p.toml") && text.contains("keys[0].env"),
            "{text}"
        );
        assert!(!text.contains("sk-abc"));
        let err = parse("[[keys]]\nenvv = \"A\"\n").unwrap_err();
        assert!(err.to_string().contains("p.toml"));
        let err = parse("provider = \"bedrock\"\n").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("p.toml:1: provider") && text.contains("bedrock"),
            "{text}"
        );
    }

    #[test]
    fn a_gateway_file_is_a_run_file() {
        let text = "listen = \"0.0.0.0:8080\"\nupstream = \"http://127.0.0.1:9/v1\"\nmax_wait = \"30s\"\ntimeout = \"90s\"\nmax_attempts = 3\nworkers = 2\n[[keys]]\nenv = \"A\"\n[[clients]]\nname = \"web\"\nkey_env = \"W\"\n[[models]]\nname = \"fast\"\n";
        let config = parse(text).unwrap();
        assert_eq!(config.base_url.as_deref(), Some("http://127.0.0.1:9/v1"));
        assert_eq!(config.timeout, Some(std::time::Duration::from_secs(90)));
        assert_eq!(config.max_attempts, Some(3));
        let err = parse("timeout = \"soon\"\n").unwrap_err().to_string();
        assert!(err.starts_with("config p.toml:1: timeout"), "{err}");
        let err = parse("max_atempts = 3\n").unwrap_err().to_string();
        assert!(err.contains("max_atempts"), "{err}");
    }

    #[test]
    fn reads_price_entries_and_names_a_bad_one() {
        let text = "[[prices]]\nmodel = \"gpt-4o-mini\"\ninput = 0.12\n[[prices]]\nmodel = \"llama\"\ninput = 1\noutput = 1\nbatch_input = 0.5\nbatch_output = 0.5\n";
        let config = parse(text).unwrap();
        assert_eq!(config.prices.len(), 2);
        assert_eq!(config.prices[0].input, Some(0.12));
        assert_eq!(config.prices[0].output, None);
        let err = parse("[[prices]]\nmodel = \"m\"\noutput = -1\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("p.toml") && err.contains("prices[0].output"),
            "{err}"
        );
        let err = parse("[[prices]]\nmodel = \" \"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("prices[0].model"), "{err}");
        let err = parse("[[prices]]\nmodel = \"m\"\ninptu = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("inptu"), "{err}");
    }

    #[test]
    fn reads_the_provider_and_api_version() {
        let text = "provider = \"azure\"\napi_version = \"2024-06-01\"\n";
        let config = parse(text).unwrap();
        assert_eq!(config.provider, Some(Provider::Azure));
        assert_eq!(config.api_version.as_deref(), Some("2024-06-01"));
    }
}
