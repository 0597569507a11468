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
//! [redis]                   # optional: distributed mode (flags --redis, --processes override)
//! url = "redis://cache:6379"
//! processes = 4             # processes sharing the keys: 1/4 of each limit while Redis is down
//! ```

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
    /// `[redis]`: distributed mode.
    pub redis: Option<RedisSection>,
    /// Where the values were written.
    #[serde(skip)]
    pub provenance: Provenance,
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
    /// Distributed mode, if configured.
    pub redis: Option<RedisSection>,
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
        Ok(RunConfig {
            base_url: raw.base_url,
            provider,
            api_version: raw.api_version,
            keys,
            redis: raw.redis.map(|r| r.validate(at)).transpose()?,
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
    fn reads_the_provider_and_api_version() {
        let text = "provider = \"azure\"\napi_version = \"2024-06-01\"\n";
        let config = parse(text).unwrap();
        assert_eq!(config.provider, Some(Provider::Azure));
        assert_eq!(config.api_version.as_deref(), Some("2024-06-01"));
    }
}
