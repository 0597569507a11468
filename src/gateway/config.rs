//! The gateway's configuration: the TOML file as written ([`RawConfig`], which command-line
//! flags may override field by field), validated into [`GatewayConfig`] with `TryFrom`, so every
//! mistake is reported with the file and the field.
//!
//! ```toml
//! listen = "127.0.0.1:8080"
//! upstream = "https://api.openai.com/v1"
//! max_wait = "30s"          # longest a request may wait for capacity before a 429
//! timeout = "600s"          # per upstream attempt (a stream: to its headers, then between chunks)
//! drain_timeout = "30s"     # on SIGTERM, how long in-flight requests may take to finish
//! body_limit_mb = 32
//!
//! [[keys]]                  # upstream keys: each has its own quota, learned from headers
//! env = "OPENAI_KEY_A"
//! rpm = 500                 # optional
//! tpm = 200000              # optional
//!
//! [[clients]]               # optional: without any, the gateway accepts every caller
//! name = "web"
//! key_env = "PACELINE_CLIENT_WEB"
//! rpm = 60                  # optional: the client's own limits
//! tpm = 100000
//! weight = 3                # share of upstream capacity when clients compete (default 1)
//! ```

use crate::config::{KeySource, limits};
use crate::quota::QuotaConfig;
use crate::upstream::DEFAULT_BASE_URL;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default longest wait for capacity.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(30);
/// Default request body limit, in MB.
pub const DEFAULT_BODY_LIMIT_MB: u64 = 32;

/// The configuration as written (every field optional); flags fill or override its fields.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `listen`.
    pub listen: Option<String>,
    /// `upstream`: the provider's base URL.
    pub upstream: Option<String>,
    /// `max_wait`, a duration such as `30s`.
    pub max_wait: Option<String>,
    /// `timeout`, per upstream attempt.
    pub timeout: Option<String>,
    /// `drain_timeout`.
    pub drain_timeout: Option<String>,
    /// `body_limit_mb`.
    pub body_limit_mb: Option<u64>,
    /// `max_attempts` per request.
    pub max_attempts: Option<u32>,
    /// `default_max_tokens`: output tokens assumed for pacing when a request sets none.
    pub default_max_tokens: Option<u64>,
    /// `concurrency`: a fixed in-flight bound (default adaptive).
    pub concurrency: Option<usize>,
    /// `[[keys]]`.
    #[serde(default)]
    pub keys: Vec<RawKey>,
    /// `[[clients]]`.
    #[serde(default)]
    pub clients: Vec<RawClient>,
    /// `[redis]`: distributed mode (see [`crate::config::RedisSection`]).
    pub redis: Option<crate::config::RedisSection>,
}

/// One `[[keys]]` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    /// Environment variable holding the key.
    pub env: String,
    /// Requests per minute.
    pub rpm: Option<u64>,
    /// Tokens per minute.
    pub tpm: Option<u64>,
}

/// One `[[clients]]` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClient {
    /// Name shown in logs and metrics.
    pub name: String,
    /// Environment variable holding the client's key.
    pub key_env: String,
    /// The client's own requests per minute.
    pub rpm: Option<u64>,
    /// The client's own tokens per minute.
    pub tpm: Option<u64>,
    /// Share of upstream capacity (default 1).
    pub weight: Option<u32>,
}

/// A client virtual key as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSpec {
    /// Name for logs and metrics.
    pub name: String,
    /// Environment variable holding its key.
    pub key_env: String,
    /// Its own limits (none: only the upstream's).
    pub limits: QuotaConfig,
    /// Its share of upstream capacity.
    pub weight: u32,
}

/// A validated gateway configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The provider's base URL.
    pub upstream: String,
    /// Upstream keys.
    pub keys: Vec<KeySource>,
    /// Client virtual keys (empty: open gateway).
    pub clients: Vec<ClientSpec>,
    /// Longest a request waits for capacity (the `x-paceline-max-wait` header may change it).
    pub max_wait: Duration,
    /// Per upstream attempt.
    pub timeout: Duration,
    /// How long SIGTERM waits for in-flight requests.
    pub drain_timeout: Duration,
    /// Largest request body, in bytes.
    pub body_limit: usize,
    /// Attempts per request.
    pub max_attempts: u32,
    /// Output tokens assumed when a request sets none.
    pub default_max_tokens: u64,
    /// Fixed in-flight bound, if any.
    pub concurrency: Option<usize>,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum GatewayConfigError {
    /// The file cannot be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not TOML of the expected shape.
    #[error("config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A value is wrong.
    #[error("{field}: {message}")]
    Invalid {
        /// The field (`max_wait`, `clients[1].key_env`, ...).
        field: String,
        /// What is wrong.
        message: String,
    },
}

impl RawConfig {
    /// Read a file as written.
    pub fn load(path: &Path) -> Result<Self, GatewayConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| GatewayConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| GatewayConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> GatewayConfigError {
    GatewayConfigError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

fn duration(
    field: &str,
    value: Option<&str>,
    default: Duration,
) -> Result<Duration, GatewayConfigError> {
    match value {
        None => Ok(default),
        Some(text) => crate::cli::run::parse_duration(text).map_err(|m| invalid(field, m)),
    }
}

fn env_name(field: String, name: &str) -> Result<(), GatewayConfigError> {
    if name.trim().is_empty() {
        return Err(invalid(field, "must name an environment variable"));
    }
    if name.starts_with("sk-") {
        return Err(invalid(
            field,
            "looks like an API key: put the key in an environment variable and name the variable here",
        ));
    }
    Ok(())
}

impl TryFrom<RawConfig> for GatewayConfig {
    type Error = GatewayConfigError;

    fn try_from(raw: RawConfig) -> Result<Self, Self::Error> {
        let listen_text = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen = listen_text.parse().map_err(|_| {
            invalid(
                "listen",
                format!("{listen_text:?} is not an address such as 127.0.0.1:8080"),
            )
        })?;
        let upstream = raw.upstream.unwrap_or_else(|| DEFAULT_BASE_URL.to_string());
        if !(upstream.starts_with("http://") || upstream.starts_with("https://")) {
            return Err(invalid(
                "upstream",
                format!("{upstream:?} is not an http:// or https:// URL"),
            ));
        }
        let mut keys = Vec::with_capacity(raw.keys.len());
        for (i, key) in raw.keys.into_iter().enumerate() {
            env_name(format!("keys[{i}].env"), &key.env)?;
            keys.push(KeySource {
                env: key.env,
                limits: limits(key.rpm, key.tpm),
            });
        }
        let mut clients: Vec<ClientSpec> = Vec::with_capacity(raw.clients.len());
        for (i, client) in raw.clients.into_iter().enumerate() {
            env_name(format!("clients[{i}].key_env"), &client.key_env)?;
            if client.name.trim().is_empty() {
                return Err(invalid(format!("clients[{i}].name"), "must not be empty"));
            }
            if clients.iter().any(|c| c.name == client.name) {
                return Err(invalid(
                    format!("clients[{i}].name"),
                    format!("{:?} is used twice", client.name),
                ));
            }
            let weight = client.weight.unwrap_or(1);
            if weight == 0 {
                return Err(invalid(
                    format!("clients[{i}].weight"),
                    "must be at least 1",
                ));
            }
            clients.push(ClientSpec {
                name: client.name,
                key_env: client.key_env,
                limits: limits(client.rpm, client.tpm).with_margin(Duration::ZERO),
                weight,
            });
        }
        let body_limit_mb = raw.body_limit_mb.unwrap_or(DEFAULT_BODY_LIMIT_MB);
        if body_limit_mb == 0 {
            return Err(invalid("body_limit_mb", "must be at least 1"));
        }
        let max_attempts = raw.max_attempts.unwrap_or(8);
        if max_attempts == 0 {
            return Err(invalid("max_attempts", "must be at least 1"));
        }
        if raw.concurrency == Some(0) {
            return Err(invalid("concurrency", "must be at least 1"));
        }
        Ok(GatewayConfig {
            listen,
            upstream,
            keys,
            clients,
            max_wait: duration("max_wait", raw.max_wait.as_deref(), DEFAULT_MAX_WAIT)?,
            timeout: duration("timeout", raw.timeout.as_deref(), Duration::from_secs(600))?,
            drain_timeout: duration(
                "drain_timeout",
                raw.drain_timeout.as_deref(),
                Duration::from_secs(30),
            )?,
            body_limit: usize::try_from(body_limit_mb.saturating_mul(1024 * 1024))
                .unwrap_or(usize::MAX),
            max_attempts,
            default_max_tokens: raw
                .default_max_tokens
                .unwrap_or(crate::tokens::DEFAULT_MAX_TOKENS),
            concurrency: raw.concurrency,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::Dimension;

    fn parse(text: &str) -> Result<GatewayConfig, GatewayConfigError> {
        GatewayConfig::try_from(toml::from_str::<RawConfig>(text).map_err(|e| {
            GatewayConfigError::Parse {
                path: "t.toml".into(),
                message: e.to_string(),
            }
        })?)
    }

    #[test]
    fn full_example_parses() {
        let c = parse(
            "listen = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:9/v1\"\nmax_wait = \"5s\"\nbody_limit_mb = 2\n\
             [[keys]]\nenv = \"K\"\nrpm = 60\n[[clients]]\nname = \"web\"\nkey_env = \"C\"\ntpm = 1000\nweight = 3\n",
        )
        .unwrap();
        assert_eq!(c.max_wait, Duration::from_secs(5));
        assert_eq!(c.body_limit, 2 * 1024 * 1024);
        assert_eq!(
            c.keys[0]
                .limits
                .get(Dimension::Requests)
                .map(|l| l.per_minute),
            Some(60)
        );
        assert_eq!(c.clients[0].weight, 3);
        assert_eq!(
            c.clients[0]
                .limits
                .get(Dimension::Tokens)
                .map(|l| l.per_minute),
            Some(1000)
        );
    }

    #[test]
    fn defaults_and_errors_name_the_field() {
        let c = parse("").unwrap();
        assert_eq!(c.max_wait, DEFAULT_MAX_WAIT);
        assert_eq!(c.body_limit, 32 * 1024 * 1024);
        assert_eq!(c.upstream, DEFAULT_BASE_URL);
        let err = parse("max_wait = \"soon\"").unwrap_err().to_string();
        assert!(err.contains("max_wait"), "{err}");
        let err = parse("[[clients]]\nname = \"a\"\nkey_env = \"sk-live\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("clients[0].key_env") && !err.contains("sk-live"),
            "{err}"
        );
        let err = parse("[[clients]]\nname = \"a\"\nkey_env = \"A\"\nweight = 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("clients[0].weight"), "{err}");
        assert!(parse("bogus = 1").is_err());
    }
}
