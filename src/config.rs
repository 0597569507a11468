//! The TOML configuration file (`--config paceline.toml`): deserialized as written, then
//! validated into typed settings, so every mistake is reported with the file and the field.
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

use crate::provider::Provider;
use crate::quota::{Dimension, LimitSpec, QuotaConfig};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    base_url: Option<String>,
    provider: Option<String>,
    api_version: Option<String>,
    #[serde(default)]
    keys: Vec<RawKey>,
    redis: Option<RedisSection>,
}

/// The `[redis]` section (distributed mode), shared by `run` and `serve` configs.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSection {
    /// `url`: `redis://[user:password@]host[:port][/db]`.
    pub url: Option<String>,
    /// `processes`: how many paceline processes share the keys.
    pub processes: Option<u32>,
    /// `share`: the part of each limit used while Redis is unreachable.
    pub share: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    env: String,
    rpm: Option<u64>,
    tpm: Option<u64>,
}

/// One upstream key as configured: where to read it, and its limits if known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySource {
    /// Environment variable holding the key.
    pub env: String,
    /// Limits known in advance (the rest are learned from headers).
    pub limits: QuotaConfig,
}

/// A validated configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
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

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A top-level value is wrong.
    #[error("config {path}: {field}: {message}")]
    Field {
        /// The file.
        path: PathBuf,
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A value is out of range.
    #[error("config {path}: keys[{index}].{field}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Which `[[keys]]` entry (0-based).
        index: usize,
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// Limits for a key from optional rpm/tpm values (0 or absent = learn from headers).
pub fn limits(rpm: Option<u64>, tpm: Option<u64>) -> QuotaConfig {
    let mut config = QuotaConfig::default();
    for (dimension, value) in [(Dimension::Requests, rpm), (Dimension::Tokens, tpm)] {
        if let Some(per_minute) = value.filter(|v| *v > 0) {
            config = config.with(
                dimension,
                LimitSpec {
                    per_minute,
                    burst: None,
                },
            );
        }
    }
    config
}

impl Config {
    /// Read and validate a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Validate configuration text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut keys = Vec::with_capacity(raw.keys.len());
        for (index, key) in raw.keys.into_iter().enumerate() {
            let invalid = |field, message: &str| ConfigError::Invalid {
                path: path.to_path_buf(),
                index,
                field,
                message: message.to_string(),
            };
            if key.env.trim().is_empty() {
                return Err(invalid("env", "must name an environment variable"));
            }
            if key.env.starts_with("sk-") {
                return Err(invalid(
                    "env",
                    "looks like an API key: put the key in an environment variable and name the variable here",
                ));
            }
            keys.push(KeySource {
                env: key.env,
                limits: limits(key.rpm, key.tpm),
            });
        }
        let provider = match raw.provider {
            Some(name) => Some(name.parse::<Provider>().map_err(|e| ConfigError::Field {
                path: path.to_path_buf(),
                field: "provider",
                message: e.to_string(),
            })?),
            None => None,
        };
        if raw
            .api_version
            .as_deref()
            .is_some_and(|v| v.trim().is_empty())
        {
            return Err(ConfigError::Field {
                path: path.to_path_buf(),
                field: "api_version",
                message: "must not be empty".to_string(),
            });
        }
        Ok(Config {
            base_url: raw.base_url,
            provider,
            api_version: raw.api_version,
            keys,
            redis: raw.redis,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keys_with_limits() {
        let text = "base_url = \"http://127.0.0.1:1/v1\"\n[[keys]]\nenv = \"A\"\nrpm = 10\n[[keys]]\nenv = \"B\"\n";
        let config = Config::parse(text, Path::new("p.toml")).unwrap();
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
        let config = Config::parse(text, Path::new("p.toml")).unwrap();
        let redis = config.redis.unwrap();
        assert_eq!(redis.url.as_deref(), Some("redis://cache:6379"));
        assert_eq!(redis.processes, Some(4));
        let err = Config::parse("[redis]\nurll = \"x\"\n", Path::new("p.toml")).unwrap_err();
        assert!(err.to_string().contains("p.toml"));
    }

    #[test]
    fn errors_name_file_and_field() {
        let err = Config::parse("[[keys]]\nenv = \"sk-abc\"\n", Path::new("p.toml")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("p.toml") && text.contains("keys[0].env"),
            "{text}"
        );
        assert!(!text.contains("sk-abc"));
        let err = Config::parse("[[keys]]\nenvv = \"A\"\n", Path::new("p.toml")).unwrap_err();
        assert!(err.to_string().contains("p.toml"));
        let err = Config::parse("provider = \"bedrock\"\n", Path::new("p.toml")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("p.toml: provider") && text.contains("bedrock"),
            "{text}"
        );
    }

    #[test]
    fn reads_the_provider_and_api_version() {
        let text = "provider = \"azure\"\napi_version = \"2024-06-01\"\n";
        let config = Config::parse(text, Path::new("p.toml")).unwrap();
        assert_eq!(config.provider, Some(Provider::Azure));
        assert_eq!(config.api_version.as_deref(), Some("2024-06-01"));
    }
}
