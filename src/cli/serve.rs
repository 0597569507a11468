//! `paceline serve`: arguments and glue for the gateway. Flags fill or override the fields of
//! the `--config` file; the result is validated once.
//!
//! It must not know how the gateway serves: the validated [`GatewayConfig`] goes to
//! [`crate::gateway`].

use crate::config::{RawConfig, RawKey};
use crate::gateway::{Gateway, GatewayConfig, RawGatewayConfig};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `paceline serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// TOML config: listen, `base_url`, `max_wait`, `[[keys]]`, `[[clients]]` (see the README).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1:8080); port 0 picks a free port.
    #[arg(long)]
    pub listen: Option<String>,
    /// Provider base URL (default OpenAI's API, or the --provider's public API).
    #[arg(long)]
    pub base_url: Option<String>,
    /// The old name of --base-url, still read (with a deprecation note).
    #[arg(long, hide = true, conflicts_with = "base_url")]
    pub upstream: Option<String>,
    /// The upstream's API: openai, anthropic, azure, openai-compatible (default: from the URL).
    #[arg(long)]
    pub provider: Option<String>,
    /// Azure OpenAI's api-version (default 2024-10-21).
    #[arg(long)]
    pub api_version: Option<String>,
    /// Environment variables holding upstream keys, comma-separated (default OPENAI_API_KEY;
    /// ANTHROPIC_API_KEY for Anthropic, AZURE_OPENAI_API_KEY for Azure).
    #[arg(long, value_delimiter = ',')]
    pub api_key_env: Vec<String>,
    /// Requests per minute per upstream key given with --api-key-env (default: learned).
    #[arg(long)]
    pub rpm: Option<u64>,
    /// Tokens per minute per upstream key given with --api-key-env (default: learned).
    #[arg(long)]
    pub tpm: Option<u64>,
    /// Longest a request waits for capacity before a 429 (e.g. 30s).
    #[arg(long)]
    pub max_wait: Option<String>,
    /// Per upstream attempt (e.g. 600s).
    #[arg(long)]
    pub timeout: Option<String>,
    /// On SIGTERM, how long in-flight requests may take to finish.
    #[arg(long)]
    pub drain_timeout: Option<String>,
    /// Threads serving requests (default 1: one relays ~12,000 requests/s on 2 cores, beyond any
    /// provider's limits; more add cross-thread wake-ups to every request and pay only past that).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Environment variable holding the key the status page and /metrics ask for (needed to
    /// read them on --listen when the config has `[[clients]]`).
    #[arg(long)]
    pub admin_key_env: Option<String>,
    /// A second address serving only the status page and /metrics (keep it on loopback or a
    /// private network).
    #[arg(long)]
    pub admin_listen: Option<String>,
    /// Export traces over OTLP/HTTP to this collector (base URL, e.g. http://127.0.0.1:4318;
    /// default: OTEL_EXPORTER_OTLP_ENDPOINT, else none).
    #[arg(long)]
    pub otlp_endpoint: Option<String>,
    /// Write JSON events (access log; attempts that were retried or failed) to this file instead of stderr.
    #[arg(long)]
    pub log_file: Option<PathBuf>,
    /// Distributed-mode options (clap ignores a flattened field's doc comment).
    #[command(flatten)]
    pub redis: super::redis::RedisArgs,
}

impl ServeArgs {
    /// The config file as written, with the flags applied over it (each recorded, so that an
    /// error names the flag that wrote a wrong value).
    pub fn raw_config(&self) -> anyhow::Result<RawGatewayConfig> {
        let mut raw = match &self.config {
            Some(path) => RawGatewayConfig::load(path)?,
            None => RawGatewayConfig::default(),
        };
        let mut written = Vec::new();
        for (field, flag, key, name) in [
            (&mut raw.listen, &self.listen, "listen", "--listen"),
            (&mut raw.base_url, &self.base_url, "base_url", "--base-url"),
            (&mut raw.upstream, &self.upstream, "upstream", "--upstream"),
            (
                &mut raw.admin_key_env,
                &self.admin_key_env,
                "admin_key_env",
                "--admin-key-env",
            ),
            (
                &mut raw.admin_listen,
                &self.admin_listen,
                "admin_listen",
                "--admin-listen",
            ),
            (&mut raw.provider, &self.provider, "provider", "--provider"),
            (
                &mut raw.api_version,
                &self.api_version,
                "api_version",
                "--api-version",
            ),
            (&mut raw.max_wait, &self.max_wait, "max_wait", "--max-wait"),
            (
                &mut raw.otlp_endpoint,
                &self.otlp_endpoint,
                "otlp_endpoint",
                "--otlp-endpoint",
            ),
            (&mut raw.timeout, &self.timeout, "timeout", "--timeout"),
            (
                &mut raw.drain_timeout,
                &self.drain_timeout,
                "drain_timeout",
                "--drain-timeout",
            ),
        ] {
            if flag.is_some() {
                field.clone_from(flag);
                written.push((key, name));
            }
        }
        if self.workers.is_some() {
            raw.workers = self.workers;
            written.push(("workers", "--workers"));
        }
        if !self.api_key_env.is_empty() {
            raw.keys = self
                .api_key_env
                .iter()
                .map(|env| RawKey {
                    env: env.trim().to_string(),
                    rpm: self.rpm,
                    tpm: self.tpm,
                })
                .collect();
            written.push(("keys", "--api-key-env"));
        } else if raw.keys.is_empty() && (self.rpm.is_some() || self.tpm.is_some()) {
            raw.keys = vec![RawKey {
                env: "OPENAI_API_KEY".into(),
                rpm: self.rpm,
                tpm: self.tpm,
            }];
        }
        for (key, flag) in written {
            raw.provenance.set_by_flag(key, flag);
        }
        Ok(raw)
    }
}

/// Start the gateway, print `listening on http://ADDR`, serve until SIGTERM, then drain.
/// `raw` is [`ServeArgs::raw_config`], read by the caller (it sizes the runtime).
pub async fn run(args: ServeArgs, raw: RawGatewayConfig) -> anyhow::Result<ExitCode> {
    let _log = crate::telemetry::init_json(args.log_file.as_deref())?;
    let mut config = GatewayConfig::try_from(raw)?;
    if config.otlp_endpoint.is_none() {
        config.otlp_endpoint = crate::telemetry::otlp::Endpoint::from_env()?;
    }
    let shared = args.redis.connect(config.redis.as_ref()).await?;
    let gateway = Gateway::start_shared(config, shared).await?;
    super::announce(gateway.addr())?;
    if let Some(admin) = gateway.admin_addr() {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "status page and /metrics on http://{admin}")?;
        out.flush()?;
    }
    super::terminated().await;
    gateway.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: ServeArgs,
    }

    #[test]
    fn flags_override_and_fill_the_config() {
        let w = Wrapper::try_parse_from([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--api-key-env",
            "A,B",
            "--rpm",
            "60",
            "--max-wait",
            "5s",
        ])
        .unwrap();
        let config = GatewayConfig::try_from(w.args.raw_config().unwrap()).unwrap();
        assert_eq!(config.keys.len(), 2);
        assert_eq!(config.keys[1].env, "B");
        assert_eq!(config.max_wait, std::time::Duration::from_secs(5));
        assert_eq!(config.base_url, "http://127.0.0.1:9/v1");
        let old =
            Wrapper::try_parse_from(["serve", "--upstream", "http://127.0.0.1:7/v1"]).unwrap();
        let config = GatewayConfig::try_from(old.args.raw_config().unwrap()).unwrap();
        assert_eq!(config.base_url, "http://127.0.0.1:7/v1");
    }

    #[test]
    fn a_wrong_value_names_the_flag_that_wrote_it() {
        let w = Wrapper::try_parse_from(["serve", "--max-wait", "soon", "--api-key-env", "sk-x"])
            .unwrap();
        let err = GatewayConfig::try_from(w.args.raw_config().unwrap()).unwrap_err();
        assert!(err.to_string().starts_with("--api-key-env: "), "{err}");
        let w = Wrapper::try_parse_from(["serve", "--max-wait", "soon"]).unwrap();
        let err = GatewayConfig::try_from(w.args.raw_config().unwrap()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--max-wait: \"soon\" is not a duration (examples: 30s, 2m, 1500ms)"
        );
    }
}
