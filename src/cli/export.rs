//! `paceline export --redis URL --job NAME -o FILE`, and `paceline status --redis URL --job
//! NAME`: a shared job's results and progress, from Redis.
//!
//! Arguments and glue only: what is kept in Redis, and how, is [`crate::distributed::queue`]'s.

use super::redis::RedisAccess;
use crate::distributed::{JobQueue, QueueStatus};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `paceline export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The Redis the job runs on.
    #[arg(long, value_name = "URL", env = "PACELINE_REDIS")]
    pub redis: String,
    /// The job's name (as given to `run --job`).
    #[arg(long)]
    pub job: String,
    /// Where to write the results (Batch API output JSONL, each custom_id once).
    #[arg(long, short)]
    pub output: PathBuf,
    /// TLS CA and password.
    #[command(flatten)]
    pub access: RedisAccess,
}

/// Write a shared job's results (a job Redis has never seen is an error).
pub async fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let target = args.access.target(&args.redis, None)?;
    let queue = JobQueue::connect(&target, &args.job).await?;
    queue.ensure_known(&args.job).await?;
    let status = queue.status(&args.job).await?;
    let written = queue.export(&args.output).await?;
    eprintln!(
        "paceline: exported {written} results of job {} to {}{}",
        args.job,
        args.output.display(),
        match status.total {
            Some(total) if written < total =>
                format!(" ({} still without a result)", total - written),
            Some(_) => String::new(),
            None => " (the input is still being loaded)".to_string(),
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// A shared job's progress as text.
pub fn render(s: &QueueStatus) -> String {
    let total = s
        .total
        .map_or_else(|| format!("{} (loading)", s.loaded), |t| t.to_string());
    let phase = match s.total {
        Some(t) if s.finished >= t => "finished",
        _ => "running or resumable",
    };
    format!(
        "job       {} (Redis)\n  status    {phase}\n  requests  {total}\n  finished  {} ({} failed)\n  in flight {}\n",
        s.job, s.finished, s.failed, s.in_progress
    )
}

/// `paceline status --redis URL --job NAME` (a job Redis has never seen is an error).
pub async fn status(
    url: &str,
    access: &RedisAccess,
    job: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let queue = JobQueue::connect(&access.target(url, None)?, job).await?;
    queue.ensure_known(job).await?;
    let status = queue.status(job).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", render(&status));
    }
    Ok(ExitCode::SUCCESS)
}
