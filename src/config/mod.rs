//! The TOML configuration of `run` and `serve`, one path for both: a file is read and
//! deserialized as written into a raw struct (serde; every key optional, unknown keys refused),
//! flags may fill or override the raw fields (`serve`), and `TryFrom` validates the raw struct
//! into typed settings. One error type, [`ConfigError`], names the file, the line, the key (or
//! the flag that wrote it) and what to do.
//!
//! - this module: what both configurations share — `[[keys]]` ([`RawKey`] → [`KeySource`]),
//!   `[redis]` ([`RedisSection`]), and the checks of names, providers, URLs and durations;
//! - [`file`](mod@file): reading a file into a raw struct ([`RawConfig`]), where each value came from
//!   ([`Provenance`]), the error;
//! - [`run`]: `paceline run --config` ([`RawRunConfig`] → [`RunConfig`]);
//! - the gateway's settings are the gateway's own (`crate::gateway::config`), built from
//!   these pieces the same way.
//!
//! It must not know what the settings drive: no key is read, nothing is connected here (keys
//! are named by their environment variables and read by `upstream`).

pub mod file;
pub mod run;

/// The deprecation note of the gateway's old name for `base_url`.
pub const UPSTREAM_RENAMED: &str = "`upstream` (--upstream) is now called `base_url` \
     (--base-url), as in both commands' configs; the old name is still read";

pub use file::{ConfigError, ConfigFile, Place, Provenance, RawConfig};
pub use run::{PriceEntry, RawRunConfig, RunConfig};

use crate::provider::Provider;
use crate::quota::{Dimension, LimitSpec, QuotaConfig};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// One `[[keys]]` entry as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    /// Environment variable holding the key (never the key itself).
    pub env: String,
    /// Requests per minute.
    pub rpm: Option<u64>,
    /// Tokens per minute.
    pub tpm: Option<u64>,
}

/// The `[[keys]]` entries, each checked and named by its place (`keys[0]`, ...).
pub fn keys(raw: Vec<RawKey>, at: &Provenance) -> Result<Vec<KeySource>, ConfigError> {
    raw.into_iter()
        .enumerate()
        .map(|(i, key)| key.validate(&format!("keys[{i}]"), at))
        .collect()
}

impl RawKey {
    /// The key as configured; `key` is where it is written (`keys[0]`).
    pub fn validate(self, key: &str, at: &Provenance) -> Result<KeySource, ConfigError> {
        check_env_name(&format!("{key}.env"), &self.env, at)?;
        Ok(KeySource {
            env: self.env,
            limits: limits(self.rpm, self.tpm),
        })
    }
}

/// One upstream key as configured: where to read it, and its limits if known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySource {
    /// Environment variable holding the key.
    pub env: String,
    /// Limits known in advance (the rest are learned from headers).
    pub limits: QuotaConfig,
}

/// The `[redis]` section (distributed mode), shared by `run` and `serve` configs; the
/// `--redis` flags are applied over it and checked with it (`cli::redis`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSection {
    /// `url`: `redis://[user[:password]@]host[:port][/db]`, `rediss://` for TLS.
    pub url: Option<String>,
    /// `processes`: how many paceline processes share the keys.
    pub processes: Option<u32>,
    /// `share`: the part of each limit used while Redis is unreachable.
    pub share: Option<f64>,
    /// `ca`: PEM file of the CA that signed the server's certificate (`rediss://`).
    pub ca: Option<PathBuf>,
    /// `password_env`: environment variable holding the Redis user's password.
    pub password_env: Option<String>,
}

impl RedisSection {
    /// The section with its values checked: at least one process, and a share above 0 and at
    /// most 1 (the `--redis` flags written over it are checked by `cli::redis`).
    pub fn validate(self, at: &Provenance) -> Result<Self, ConfigError> {
        if let Some(name) = &self.password_env {
            check_env_name("redis.password_env", name, at)?;
        }
        if self.processes == Some(0) {
            return Err(at.invalid("redis.processes", "must be at least 1"));
        }
        if let Some(share) = self.share
            && !(share > 0.0 && share <= 1.0)
        {
            return Err(at.invalid(
                "redis.share",
                format!("must be above 0 and at most 1, not {share}"),
            ));
        }
        Ok(self)
    }
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

/// `name` must name an environment variable, and must not be a key pasted in its place.
pub fn check_env_name(key: &str, name: &str, at: &Provenance) -> Result<(), ConfigError> {
    if name.trim().is_empty() {
        return Err(at.invalid(key, "must name an environment variable"));
    }
    if name.starts_with("sk-") {
        return Err(at.invalid(
            key,
            "looks like an API key: put the key in an environment variable and name the variable here",
        ));
    }
    Ok(())
}

/// The provider named at `key`, if any.
pub fn provider(
    key: &str,
    name: Option<&str>,
    at: &Provenance,
) -> Result<Option<Provider>, ConfigError> {
    name.map(|name| name.parse::<Provider>().map_err(|e| at.invalid(key, e)))
        .transpose()
}

/// `url` must be an `http://` or `https://` URL.
pub fn check_http_url(key: &str, url: &str, at: &Provenance) -> Result<(), ConfigError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(at.invalid(key, format!("{url:?} is not an http:// or https:// URL")))
    }
}

/// The OTLP collector written at `otlp_endpoint` (a base URL: `/v1/traces` is added), if any.
pub fn otlp_endpoint(
    text: Option<&str>,
    at: &Provenance,
) -> Result<Option<crate::telemetry::otlp::Endpoint>, ConfigError> {
    let Some(text) = text else {
        return Ok(None);
    };
    crate::telemetry::otlp::Endpoint::base(text, "otlp_endpoint")
        .map(Some)
        .map_err(|_| {
            at.invalid(
                "otlp_endpoint",
                format!("{text:?} is not an http:// or https:// URL"),
            )
        })
}

/// The duration written at `key` (`30s`, `2m`, `1500ms`, ...), else `default`.
pub fn duration(
    key: &str,
    text: Option<&str>,
    default: Duration,
    at: &Provenance,
) -> Result<Duration, ConfigError> {
    match text {
        None => Ok(default),
        Some(text) => crate::time::parse_duration(text).map_err(|m| at.invalid(key, m)),
    }
}
