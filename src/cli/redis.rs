//! `--redis` and its companions, shared by `run` and `serve`: the flags over the config file's
//! `[redis]` section. Argument parsing, and the one call that connects the shared quotas
//! ([`RedisArgs::connect`]); it must not know what is kept in Redis or how: the connection and
//! everything sent over it are [`crate::distributed`]'s.

use crate::config::RedisSection;
use crate::distributed::SharedQuotas;
use crate::upstream::QuotaSharing;
use anyhow::Context;
use clap::Args;
use std::sync::Arc;

/// Distributed-mode options.
#[derive(Debug, Clone, Default, Args)]
pub struct RedisArgs {
    /// Share quotas with other paceline processes through this Redis (or Valkey):
    /// `redis://[user:password@]host[:port][/db]`. Also `[redis] url`.
    #[arg(long, value_name = "URL", env = "PACELINE_REDIS")]
    pub redis: Option<String>,
    /// How many paceline processes share the keys: while Redis is unreachable each paces on
    /// 1/N of every limit (default 1, or `[redis] processes`).
    #[arg(long, value_name = "N")]
    pub processes: Option<u32>,
    /// The part of every limit this process uses while Redis is unreachable, above 0 and at
    /// most 1 (default 1 / --processes, or `[redis] share`).
    #[arg(long, value_name = "FRACTION")]
    pub redis_share: Option<f64>,
}

impl RedisArgs {
    /// The flags over the config file's `[redis]` section: the URL and the local share, if
    /// distributed mode is on.
    pub fn settings(
        &self,
        section: Option<&RedisSection>,
    ) -> anyhow::Result<Option<(String, f64)>> {
        let Some(url) = self
            .redis
            .clone()
            .or_else(|| section.and_then(|s| s.url.clone()))
        else {
            return Ok(None);
        };
        let processes = self
            .processes
            .or_else(|| section.and_then(|s| s.processes))
            .unwrap_or(1);
        if processes == 0 {
            anyhow::bail!("--processes must be at least 1");
        }
        let share = self
            .redis_share
            .or_else(|| section.and_then(|s| s.share))
            .unwrap_or(1.0 / f64::from(processes));
        if !(share > 0.0 && share <= 1.0) {
            anyhow::bail!("--redis-share must be above 0 and at most 1, not {share}");
        }
        Ok(Some((url, share)))
    }

    /// Connect the quotas when distributed mode is on; what is sent to Redis without being
    /// waited for runs on the current runtime.
    pub async fn connect(
        &self,
        section: Option<&RedisSection>,
    ) -> anyhow::Result<Option<Arc<dyn QuotaSharing>>> {
        let Some((url, share)) = self.settings(section)? else {
            return Ok(None);
        };
        let shared = SharedQuotas::connect(&url, share, tokio::runtime::Handle::current())
            .await
            .context("distributed mode needs Redis at start (--redis)")?;
        Ok(Some(Arc::new(shared)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_share_defaults_to_one_over_the_processes() {
        let section = RedisSection {
            url: Some("redis://cache".into()),
            processes: Some(4),
            share: None,
        };
        let flags = RedisArgs::default();
        assert_eq!(
            flags.settings(Some(&section)).unwrap(),
            Some(("redis://cache".to_string(), 0.25))
        );
        let flags = RedisArgs {
            redis_share: Some(0.5),
            ..RedisArgs::default()
        };
        assert_eq!(flags.settings(Some(&section)).unwrap().unwrap().1, 0.5);
        assert_eq!(RedisArgs::default().settings(None).unwrap(), None);
        let bad = RedisArgs {
            redis: Some("redis://cache".into()),
            redis_share: Some(1.5),
            ..RedisArgs::default()
        };
        assert!(
            bad.settings(None)
                .unwrap_err()
                .to_string()
                .contains("--redis-share")
        );
    }
}
