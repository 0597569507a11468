//! `--redis` and its companions, shared by `run` and `serve`: the flags over the config file's
//! `[redis]` section. Argument parsing, and the one call that connects the shared quotas
//! ([`RedisArgs::connect`]); it must not know what is kept in Redis or how: the connection and
//! everything sent over it are [`crate::distributed`]'s.

use crate::config::RedisSection;
use crate::distributed::{RedisTarget, SharedQuotas};
use crate::upstream::QuotaSharing;
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;

/// How to reach a Redis that asks for TLS with a private CA, or for a password: shared by
/// `run`, `serve`, `status` and `export`.
#[derive(Debug, Clone, Default, Args)]
pub struct RedisAccess {
    /// PEM file of the CA that signed the Redis server's certificate (`rediss://` URLs); without
    /// it the system's trust store is used. Also `[redis] ca`.
    #[arg(long, value_name = "FILE")]
    pub redis_ca: Option<PathBuf>,
    /// Environment variable holding the Redis user's password (it replaces a password in the
    /// URL; the user is the URL's: `rediss://paceline@host`). Also `[redis] password_env`.
    #[arg(long, value_name = "VAR")]
    pub redis_password_env: Option<String>,
}

impl RedisAccess {
    /// Redis at `url`, reached as these flags (over the config's `[redis]`) say.
    pub fn target(&self, url: &str, section: Option<&RedisSection>) -> anyhow::Result<RedisTarget> {
        let mut target = RedisTarget::new(url);
        if let Some(ca) = self
            .redis_ca
            .clone()
            .or_else(|| section.and_then(|s| s.ca.clone()))
        {
            target = target.with_ca_file(ca)?;
        }
        if let Some(var) = self
            .redis_password_env
            .clone()
            .or_else(|| section.and_then(|s| s.password_env.clone()))
        {
            target = target.with_password_env(&var)?;
        }
        Ok(target)
    }
}

/// Distributed-mode options.
#[derive(Debug, Clone, Default, Args)]
pub struct RedisArgs {
    /// Share quotas with other paceline processes through this Redis (or Valkey), one node or
    /// a Redis Cluster: `redis://[user[:password]@]host[:port][/db]`, `rediss://` for TLS. Also
    /// `[redis] url`.
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
    /// TLS CA and password.
    #[command(flatten)]
    pub access: RedisAccess,
}

impl RedisArgs {
    /// The flags over the config file's `[redis]` section: the URL and the local share, if
    /// distributed mode is on.
    pub fn settings(
        &self,
        section: Option<&RedisSection>,
    ) -> anyhow::Result<Option<(String, f64)>> {
        self.url_and_share(section)
    }

    /// Where Redis is and how to reach it, and the local share, if distributed mode is on.
    pub fn target(
        &self,
        section: Option<&RedisSection>,
    ) -> anyhow::Result<Option<(RedisTarget, f64)>> {
        let Some((url, share)) = self.url_and_share(section)? else {
            return Ok(None);
        };
        Ok(Some((self.access.target(&url, section)?, share)))
    }

    fn url_and_share(
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
        let Some((target, share)) = self.target(section)? else {
            return Ok(None);
        };
        let shared = SharedQuotas::connect(&target, share, tokio::runtime::Handle::current())
            .await
            .context(
                "distributed mode needs Redis at start (--redis); once started, a process goes on \
                 without it on its local share",
            )?;
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
            ..RedisSection::default()
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
