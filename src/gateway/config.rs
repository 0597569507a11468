//! The gateway's configuration: the TOML file as written ([`RawGatewayConfig`], which
//! command-line flags may override field by field, recording that they did), validated into
//! [`GatewayConfig`] with `TryFrom`, the same path as `run`'s (`crate::config`): every mistake
//! is a [`ConfigError`] naming the file, the line and the key, or the flag that wrote it.
//!
//! ```toml
//! listen = "127.0.0.1:8080"
//! base_url = "https://api.openai.com/v1"   # `upstream` is its old name, still read
//! max_wait = "30s"          # longest a request may wait for capacity before a 429
//! timeout = "600s"          # per upstream attempt (a stream: to its headers, then between chunks)
//! drain_timeout = "30s"     # on SIGTERM, how long in-flight requests may take to finish
//! body_limit_mb = 32
//! workers = 1               # threads serving requests (default 1; see `paceline serve --help`)
//! admin_key_env = "PACELINE_ADMIN_KEY"  # the key the status page and /metrics ask for
//! admin_listen = "127.0.0.1:9090"       # optional: the status page and /metrics on their own address
//! otlp_endpoint = "http://127.0.0.1:4318" # optional: export traces over OTLP/HTTP
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
//!
//! [[models]]                # optional: a public model name served by deployments, in order
//! name = "fast"
//! [[models.deployments]]
//! provider = "azure"        # openai | anthropic | azure | openai-compatible
//! base_url = "https://my-resource.openai.azure.com"
//! model = "gpt-4o-mini"     # the name sent upstream (Azure: the deployment); default `name`
//! api_version = "2024-10-21"
//! env = "AZURE_OPENAI_KEY"
//! rpm = 300                 # optional
//! tpm = 50000               # optional
//! [[models.deployments]]    # the fallback when the first is paused or failing
//! provider = "openai"
//! model = "gpt-4o-mini"
//! env = "OPENAI_API_KEY"
//! ```
//!
//! `provider` and `api_version` at the top level say how to speak to `base_url` (default:
//! inferred from its URL). The names are `run`'s (`crate::config::run`): one file serves both
//! commands; `run` leaves the settings only the gateway has alone.
//!
//! It must not know how the gateway serves: only what the file and flags say, checked.

use crate::config::{
    self, ConfigError, KeySource, Provenance, RawConfig, RawKey, RedisSection, check_env_name,
    check_http_url, limits,
};
use crate::provider::Provider;
use crate::quota::QuotaConfig;
use crate::upstream::DEFAULT_BASE_URL;
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default longest wait for capacity.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(30);
/// Default request body limit, in MB.
pub const DEFAULT_BODY_LIMIT_MB: u64 = 32;

/// The configuration as written (every field optional); flags fill or override its fields and
/// record that they did in [`RawGatewayConfig::provenance`].
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGatewayConfig {
    /// `listen`.
    pub listen: Option<String>,
    /// `base_url`: the provider's base URL.
    pub base_url: Option<String>,
    /// `upstream`: the old name of `base_url`, read with a deprecation note.
    pub upstream: Option<String>,
    /// `provider` of `upstream` (default: inferred from its URL).
    pub provider: Option<String>,
    /// `api_version` (Azure) of `upstream`.
    pub api_version: Option<String>,
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
    /// `workers`: threads serving requests (default [`DEFAULT_WORKERS`]).
    pub workers: Option<usize>,
    /// `admin_key_env`: the variable holding the key the admin surface asks for.
    pub admin_key_env: Option<String>,
    /// `admin_listen`: a second address serving only the admin surface.
    pub admin_listen: Option<String>,
    /// `otlp_endpoint`: the OpenTelemetry collector's base URL.
    pub otlp_endpoint: Option<String>,
    /// `[[keys]]`.
    #[serde(default)]
    pub keys: Vec<RawKey>,
    /// `[[clients]]`.
    #[serde(default)]
    pub clients: Vec<RawClient>,
    /// `[[models]]`.
    #[serde(default)]
    pub models: Vec<RawModel>,
    /// `[redis]`: distributed mode.
    pub redis: Option<RedisSection>,
    /// `[[prices]]`: `run`'s and `plan`'s price entries, accepted so that one file serves
    /// every command, and not read.
    pub prices: Option<toml::Value>,
    /// Where the values were written: the file, and the keys flags wrote over it.
    #[serde(skip)]
    pub provenance: Provenance,
}

/// A `[[models]]` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    /// The public model name.
    pub name: String,
    /// `[[models.deployments]]`, in order of preference.
    #[serde(default)]
    pub deployments: Vec<RawDeployment>,
}

/// A `[[models.deployments]]` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeployment {
    /// `provider` (default: inferred from `base_url`).
    pub provider: Option<String>,
    /// `base_url` (default: the provider's public API).
    pub base_url: Option<String>,
    /// `model` sent upstream (default: the public name).
    pub model: Option<String>,
    /// `api_version` (Azure).
    pub api_version: Option<String>,
    /// `env`: the variable holding the key.
    pub env: String,
    /// `rpm`.
    pub rpm: Option<u64>,
    /// `tpm`.
    pub tpm: Option<u64>,
}

/// One validated upstream deployment of a public model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    /// The public model name it serves.
    pub serves: String,
    /// Its provider.
    pub provider: Provider,
    /// Its base URL.
    pub base_url: String,
    /// The model name sent upstream.
    pub model: String,
    /// Azure's `api-version`, if set.
    pub api_version: Option<String>,
    /// Its key and limits.
    pub key: KeySource,
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
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Where to serve the admin surface alone, if anywhere (see [`super::admin`]).
    pub admin_listen: Option<SocketAddr>,
    /// The variable holding the admin key, if set.
    pub admin_key_env: Option<String>,
    /// The provider's base URL.
    pub base_url: String,
    /// How to speak to it.
    pub provider: Provider,
    /// Its `api-version` (Azure), if set.
    pub api_version: Option<String>,
    /// Upstream keys.
    pub keys: Vec<KeySource>,
    /// `[[models]]` deployments, every model's in order of preference.
    pub deployments: Vec<Deployment>,
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
    /// Threads serving requests.
    pub workers: usize,
    /// Distributed mode, if configured (the `--redis` flags go over it).
    pub redis: Option<RedisSection>,
    /// Where traces go, if anywhere.
    pub otlp_endpoint: Option<crate::telemetry::otlp::Endpoint>,
}

/// Threads serving requests unless `workers` says otherwise. One thread relays some 12,000
/// requests/s on a 2-core machine, far beyond what a provider's keys allow; a second one wakes
/// for every request to look for work to steal (at 2,000 requests/s: three times the context
/// switches and a third more CPU time per request), so it pays only past that.
pub const DEFAULT_WORKERS: usize = 1;

impl RawConfig for RawGatewayConfig {
    fn provenance_mut(&mut self) -> &mut Provenance {
        &mut self.provenance
    }
}

impl RawGatewayConfig {
    /// Threads serving requests: `workers`, else [`DEFAULT_WORKERS`] (a 0 is refused by the
    /// conversion to [`GatewayConfig`]).
    pub fn workers(&self) -> usize {
        self.workers.unwrap_or(DEFAULT_WORKERS)
    }
}

impl TryFrom<RawGatewayConfig> for GatewayConfig {
    type Error = ConfigError;

    fn try_from(raw: RawGatewayConfig) -> Result<Self, Self::Error> {
        let at = &raw.provenance;
        let workers = raw.workers();
        let listen_text = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen = listen_text.parse().map_err(|_| {
            at.invalid(
                "listen",
                format!("{listen_text:?} is not an address such as 127.0.0.1:8080"),
            )
        })?;
        let admin_listen = raw
            .admin_listen
            .as_deref()
            .map(|text| {
                text.parse::<SocketAddr>().map_err(|_| {
                    at.invalid(
                        "admin_listen",
                        format!("{text:?} is not an address such as 127.0.0.1:9090"),
                    )
                })
            })
            .transpose()?;
        if let Some(env) = &raw.admin_key_env {
            check_env_name("admin_key_env", env, at)?;
        }
        let chosen = config::provider("provider", raw.provider.as_deref(), at)?;
        let given = match (raw.base_url, raw.upstream) {
            (Some(_), Some(_)) => {
                return Err(at.invalid(
                    "upstream",
                    "is the old name of base_url: give only base_url",
                ));
            }
            (Some(url), None) => Some(url),
            (None, Some(url)) => {
                tracing::warn!("{}", config::UPSTREAM_RENAMED);
                Some(url)
            }
            (None, None) => None,
        };
        let base_url = match (given, chosen) {
            (Some(url), _) => url,
            (None, Some(p)) => p
                .default_base_url()
                .ok_or_else(|| {
                    at.invalid(
                        "base_url",
                        format!("is required for provider {p}: give its base URL"),
                    )
                })?
                .to_string(),
            (None, None) => DEFAULT_BASE_URL.to_string(),
        };
        check_http_url("base_url", &base_url, at)?;
        let provider = chosen.unwrap_or_else(|| Provider::infer(&base_url));
        let deployments = deployments(raw.models, at)?;
        let keys = config::keys(raw.keys, at)?;
        let mut clients: Vec<ClientSpec> = Vec::with_capacity(raw.clients.len());
        for (i, client) in raw.clients.into_iter().enumerate() {
            check_env_name(&format!("clients[{i}].key_env"), &client.key_env, at)?;
            if client.name.trim().is_empty() {
                return Err(at.invalid(format!("clients[{i}].name"), "must not be empty"));
            }
            if clients.iter().any(|c| c.name == client.name) {
                return Err(at.invalid(
                    format!("clients[{i}].name"),
                    format!(
                        "{:?} is used twice: give each client its own name",
                        client.name
                    ),
                ));
            }
            let weight = client.weight.unwrap_or(1);
            if weight == 0 {
                return Err(at.invalid(format!("clients[{i}].weight"), "must be at least 1"));
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
            return Err(at.invalid("body_limit_mb", "must be at least 1"));
        }
        let max_attempts = raw.max_attempts.unwrap_or(8);
        if max_attempts == 0 {
            return Err(at.invalid("max_attempts", "must be at least 1"));
        }
        if raw.concurrency == Some(0) {
            return Err(at.invalid(
                "concurrency",
                "must be at least 1 (leave it out for the adaptive bound)",
            ));
        }
        if workers == 0 {
            return Err(at.invalid("workers", "must be at least 1"));
        }
        let duration = |key, text: &Option<String>, default| {
            config::duration(key, text.as_deref(), default, at)
        };
        Ok(GatewayConfig {
            listen,
            admin_listen,
            admin_key_env: raw.admin_key_env,
            base_url,
            provider,
            api_version: raw.api_version,
            keys,
            deployments,
            clients,
            max_wait: duration("max_wait", &raw.max_wait, DEFAULT_MAX_WAIT)?,
            timeout: duration("timeout", &raw.timeout, Duration::from_secs(600))?,
            drain_timeout: duration("drain_timeout", &raw.drain_timeout, Duration::from_secs(30))?,
            body_limit: usize::try_from(body_limit_mb.saturating_mul(1024 * 1024))
                .unwrap_or(usize::MAX),
            max_attempts,
            default_max_tokens: raw
                .default_max_tokens
                .unwrap_or(crate::tokens::DEFAULT_MAX_TOKENS),
            concurrency: raw.concurrency,
            workers,
            redis: raw.redis.map(|r| r.validate(at)).transpose()?,
            otlp_endpoint: config::otlp_endpoint(raw.otlp_endpoint.as_deref(), at)?,
        })
    }
}

/// Validate `[[models]]` into deployments.
fn deployments(models: Vec<RawModel>, at: &Provenance) -> Result<Vec<Deployment>, ConfigError> {
    let mut all: Vec<Deployment> = Vec::new();
    for (m, model) in models.into_iter().enumerate() {
        if model.name.trim().is_empty() {
            return Err(at.invalid(format!("models[{m}].name"), "must not be empty"));
        }
        if all.iter().any(|d| d.serves == model.name) {
            return Err(at.invalid(
                format!("models[{m}].name"),
                format!(
                    "{:?} is used twice: list all its deployments under one [[models]]",
                    model.name
                ),
            ));
        }
        if model.deployments.is_empty() {
            return Err(at.invalid(
                format!("models[{m}].deployments"),
                "needs at least one [[models.deployments]]",
            ));
        }
        for (d, deployment) in model.deployments.into_iter().enumerate() {
            let key = |name: &str| format!("models[{m}].deployments[{d}].{name}");
            check_env_name(&key("env"), &deployment.env, at)?;
            let provider = config::provider(&key("provider"), deployment.provider.as_deref(), at)?;
            let base_url = match (deployment.base_url, provider) {
                (Some(url), _) => url,
                (None, Some(p)) => match p.default_base_url() {
                    Some(url) => url.to_string(),
                    None => {
                        return Err(at.invalid(
                            key("base_url"),
                            format!("is required for provider {p}: give its base URL"),
                        ));
                    }
                },
                (None, None) => {
                    return Err(at.invalid(key("base_url"), "give base_url or provider"));
                }
            };
            check_http_url(&key("base_url"), &base_url, at)?;
            all.push(Deployment {
                serves: model.name.clone(),
                provider: provider.unwrap_or_else(|| Provider::infer(&base_url)),
                base_url,
                model: deployment.model.unwrap_or_else(|| model.name.clone()),
                api_version: deployment.api_version,
                key: KeySource {
                    env: deployment.env,
                    limits: limits(deployment.rpm, deployment.tpm),
                },
            });
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigFile;
    use crate::quota::Dimension;

    #[test]
    fn providers_and_model_deployments() {
        let c = parse(
            "provider = \"anthropic\"\n[[models]]\nname = \"fast\"\n[[models.deployments]]\nprovider = \"azure\"\nbase_url = \"https://r.openai.azure.com\"\nmodel = \"gpt-4o-mini\"\nenv = \"AZ\"\n[[models.deployments]]\nprovider = \"openai\"\nenv = \"OA\"\n",
        )
        .unwrap();
        assert_eq!(c.provider, Provider::Anthropic);
        assert_eq!(c.base_url, "https://api.anthropic.com/v1");
        assert_eq!(c.deployments.len(), 2);
        assert_eq!(c.deployments[0].provider, Provider::Azure);
        assert_eq!(c.deployments[1].base_url, "https://api.openai.com/v1");
        assert_eq!(c.deployments[1].model, "fast");
        let err = parse("[[models]]\nname = \"x\"\n[[models.deployments]]\nprovider = \"azure\"\nenv = \"AZ\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("models[0].deployments[0].base_url"), "{err}");
        let err = parse("provider = \"bedrock\"\n").unwrap_err().to_string();
        assert!(err.contains("provider") && err.contains("bedrock"), "{err}");
    }

    fn parse(text: &str) -> Result<GatewayConfig, ConfigError> {
        RawGatewayConfig::from_file(ConfigFile::new("t.toml", text))?.try_into()
    }

    #[test]
    fn full_example_parses() {
        let c = parse(
            "listen = \"127.0.0.1:0\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmax_wait = \"5s\"\nbody_limit_mb = 2\n\
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
        assert_eq!(c.base_url, DEFAULT_BASE_URL);
        assert_eq!(c.workers, DEFAULT_WORKERS);
        assert_eq!(parse("workers = 4").unwrap().workers, 4);
        let err = parse("workers = 0").unwrap_err().to_string();
        assert!(err.contains("workers"), "{err}");
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

    #[test]
    fn one_vocabulary_with_run_and_the_old_name_still_read() {
        let old = parse("upstream = \"http://127.0.0.1:9/v1\"\n").unwrap();
        assert_eq!(old.base_url, "http://127.0.0.1:9/v1");
        let err = parse("base_url = \"http://a/v1\"\nupstream = \"http://b/v1\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("t.toml:2: upstream") && err.contains("base_url"),
            "{err}"
        );
        // run's file, as run reads it, is a gateway's file too.
        let run = "base_url = \"http://127.0.0.1:9/v1\"\nprovider = \"openai\"\n[[keys]]\nenv = \"A\"\nrpm = 5\n[redis]\nurl = \"redis://127.0.0.1:1\"\n";
        let c = parse(run).unwrap();
        assert_eq!(
            (c.base_url.as_str(), c.keys.len()),
            ("http://127.0.0.1:9/v1", 1)
        );
    }

    #[test]
    fn the_admin_settings() {
        let c = parse("admin_key_env = \"ADMIN\"\nadmin_listen = \"127.0.0.1:9090\"\n").unwrap();
        assert_eq!(c.admin_key_env.as_deref(), Some("ADMIN"));
        assert_eq!(c.admin_listen, Some("127.0.0.1:9090".parse().unwrap()));
        let err = parse("admin_listen = \"loopback\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("t.toml:1: admin_listen"), "{err}");
        let err = parse("admin_key_env = \"sk-123\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("admin_key_env") && !err.contains("sk-123"),
            "{err}"
        );
    }
}
