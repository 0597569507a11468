//! `paceline status PATH`: a job's progress from its state — counts by state and by error code,
//! tokens, the achieved rate, and whether it is running, finished or resumable.
//!
//! Arguments and printing only: the figures are read by [`crate::store::report`].

use crate::store::report::{self, JobStatus, Phase};
use crate::store::{self, Store};
use crate::time::local_time as when;
use clap::Args;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `paceline status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The state database, or the output file it sits beside.
    #[arg(required_unless_present = "job")]
    pub path: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// A job shared through Redis: its Redis (with --job).
    #[arg(long, value_name = "URL", env = "PACELINE_REDIS", requires = "job")]
    pub redis: Option<String>,
    /// A job shared through Redis: its name (with --redis).
    #[arg(long, requires = "redis")]
    pub job: Option<String>,
    /// A job shared through Redis: TLS CA and password.
    #[command(flatten)]
    pub redis_access: super::redis::RedisAccess,
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        100.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// The status as text.
pub fn render(s: &JobStatus) -> String {
    let mut out = String::new();
    let finished = s.done + s.failed;
    let phase = match &s.phase {
        Phase::Running { holder, .. } => format!("running ({holder})"),
        Phase::Finished => "finished".to_string(),
        Phase::Resumable { last_run } => {
            format!("resumable (last run: {last_run}); run the same command again to resume")
        }
        Phase::Empty => "no job (its first run stopped before the input was accepted)".into(),
    };
    let _ = writeln!(out, "job       {}", s.state_path);
    let _ = writeln!(out, "  status    {phase}");
    if s.phase == Phase::Empty {
        return out;
    }
    let sha = s.input_sha256.get(..12).unwrap_or(&s.input_sha256);
    let _ = writeln!(out, "  input     {} (sha256 {sha}…)", s.input);
    let _ = writeln!(out, "  output    {}", s.output);
    let _ = writeln!(out, "  began     {}", when(s.created_at));
    match &s.phase {
        // The store knows which requests the running process holds (queued in it, being sent,
        // or waiting to retry); the process itself says how many it is sending.
        Phase::Running { activity, .. } => {
            let _ = writeln!(
                out,
                "  progress  {finished}/{} ({:.1}%): {} done, {} failed, {} held by the running \
                 process, {} not yet read",
                s.total,
                percent(finished, s.total),
                s.done,
                s.failed,
                s.in_flight,
                s.pending
            );
            if let Some(activity) = activity {
                let _ = writeln!(out, "  now       {activity}");
            }
        }
        // Nothing is in flight without a process: what the last run held is sent again on
        // resume.
        _ => {
            let held = if s.in_flight > 0 {
                format!(
                    " ({} were in flight when the last run stopped: they are sent again)",
                    s.in_flight
                )
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "  progress  {finished}/{} ({:.1}%): {} done, {} failed, {} pending{held}",
                s.total,
                percent(finished, s.total),
                s.done,
                s.failed,
                s.pending + s.in_flight
            );
        }
    }
    if !s.failed_by_code.is_empty() {
        let list: Vec<String> = s
            .failed_by_code
            .iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect();
        let _ = writeln!(out, "  failed    {}", list.join(", "));
    }
    if s.skipped > 0 {
        let _ = writeln!(out, "  skipped   {} invalid input lines", s.skipped);
    }
    let _ = writeln!(
        out,
        "  attempts  {} ({} retries, {} answered 429)",
        s.attempts, s.retries, s.rate_limited
    );
    let _ = writeln!(
        out,
        "  tokens    {} in, {} out",
        s.prompt_tokens, s.completion_tokens
    );
    if let Some(run) = &s.last_run {
        let ended = match (&run.outcome, run.ended_at) {
            (Some(outcome), Some(at)) => format!("{outcome} at {}", when(at)),
            _ if matches!(s.phase, Phase::Running { .. }) => "running".to_string(),
            _ => format!(
                "never closed (crashed or killed; last commit {})",
                run.last_commit_at.map_or_else(|| "none".into(), when)
            ),
        };
        let _ = writeln!(
            out,
            "  runs      {}; the last ({}) began {}, {ended}",
            s.runs,
            run.mode,
            when(run.started_at)
        );
        if let Some(figures) = &s.figures {
            let which = if figures.run == run.id {
                "the last run"
            } else {
                "the last run that sent"
            };
            let _ = writeln!(out, "  rate      {} in {which}", figures.rate_text());
            let _ = writeln!(out, "  budget    {}", figures.budget_text());
        }
    }
    out
}

/// The shards of a job sent with `--via batch`: each one's provider id and state.
pub fn render_shards(shards: &[store::shards::Shard]) -> String {
    let mut out = String::new();
    if shards.is_empty() {
        return out;
    }
    let _ = writeln!(out, "  shards    {} (--via batch)", shards.len());
    for s in shards {
        let _ = writeln!(
            out,
            "    {:>4}  {:<9}  {:<40}  {:<12}  {} requests of {} ({} done, {} failed at the last poll)",
            s.id,
            s.state.as_str(),
            s.provider_id.as_deref().unwrap_or("-"),
            s.status.as_deref().unwrap_or("-"),
            s.requests,
            s.model,
            s.completed,
            s.failed
        );
    }
    out
}

/// Show a job's status.
pub fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let Some(path) = &args.path else {
        anyhow::bail!("give the job's state (PATH), or --redis URL --job NAME");
    };
    let path = store::locate(path)?;
    let store = Store::open_existing(&path)?;
    let status = report::job_status(&store)?;
    let shards = store::shards::all(&store)?;
    if args.json {
        let mut value = serde_json::to_value(&status)?;
        if let Some(map) = value.as_object_mut() {
            map.insert("shards".into(), serde_json::to_value(&shards)?);
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", render(&status));
        print!("{}", render_shards(&shards));
    }
    Ok(ExitCode::SUCCESS)
}
