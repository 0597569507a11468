//! `paceline serve`: arguments and glue for the gateway. Flags fill or override the fields of
//! the `--config` file; the result is validated once.

use crate::gateway::config::{RawConfig, RawKey};
use crate::gateway::{Gateway, GatewayConfig};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `paceline serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// TOML config: listen, upstream, `max_wait`, `[[keys]]`, `[[clients]]` (see the README).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1:8080); port 0 picks a free port.
    #[arg(long)]
    pub listen: Option<String>,
    /// Provider base URL (default OpenAI's API, or the --provider's public API).
    #[arg(long)]
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
    /// Write JSON events (access log; attempts that were retried or failed) to this file instead of stderr.
    #[arg(long)]
    pub log_file: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub redis: super::redis::RedisArgs,
}

impl ServeArgs {
    /// The config file as written, with the flags applied over it.
    pub fn raw_config(&self) -> anyhow::Result<RawConfig> {
        let mut raw = match &self.config {
            Some(path) => RawConfig::load(path)?,
            None => RawConfig::default(),
        };
        let set = |field: &mut Option<String>, flag: &Option<String>| {
            if flag.is_some() {
                field.clone_from(flag);
            }
        };
        set(&mut raw.listen, &self.listen);
        set(&mut raw.upstream, &self.upstream);
        set(&mut raw.provider, &self.provider);
        set(&mut raw.api_version, &self.api_version);
        set(&mut raw.max_wait, &self.max_wait);
        set(&mut raw.timeout, &self.timeout);
        set(&mut raw.drain_timeout, &self.drain_timeout);
        if self.workers.is_some() {
            raw.workers = self.workers;
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
        } else if raw.keys.is_empty() && (self.rpm.is_some() || self.tpm.is_some()) {
            raw.keys = vec![RawKey {
                env: "OPENAI_API_KEY".into(),
                rpm: self.rpm,
                tpm: self.tpm,
            }];
        }
        Ok(raw)
    }
}

/// Start the gateway, print `listening on http://ADDR`, serve until SIGTERM, then drain.
/// `raw` is [`ServeArgs::raw_config`], read by the caller (it sizes the runtime).
pub async fn run(args: ServeArgs, raw: RawConfig) -> anyhow::Result<ExitCode> {
    let _log = crate::telemetry::init_json(args.log_file.as_deref())?;
    let shared = args.redis.connect(raw.redis.as_ref()).await?;
    let config = GatewayConfig::try_from(raw)?;
    let gateway = Gateway::start_shared(config, shared).await?;
    super::announce(gateway.addr())?;
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
            "--upstream",
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
        assert_eq!(config.upstream, "http://127.0.0.1:9/v1");
    }
}
