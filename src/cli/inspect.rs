//! `paceline inspect PATH CUSTOM_ID`: the whole attempt history of one request.
//!
//! Arguments and printing only: the history is read by [`crate::store::report`].

use crate::store::report::{self, RequestHistory};
use crate::store::{self, Store};
use crate::time::local_time as when;
use clap::Args;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `paceline inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The state database, or the output file it sits beside.
    pub path: PathBuf,
    /// The request's custom_id.
    pub custom_id: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The history as text.
pub fn render(h: &RequestHistory) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} (input line {}): {}{}",
        h.custom_id,
        h.line,
        h.state,
        h.error_code
            .as_ref()
            .map(|c| format!(" ({c})"))
            .unwrap_or_default()
    );
    if h.attempts.is_empty() {
        let _ = writeln!(out, "  no attempt recorded");
    }
    for a in &h.attempts {
        let status = a
            .status
            .map_or_else(|| "no answer".to_string(), |s| format!("HTTP {s}"));
        let mut waited = Vec::new();
        if a.waited_quota_ms > 0 {
            waited.push(format!(
                "quota {} ms{}",
                a.waited_quota_ms,
                if a.paused { " (paused by a 429)" } else { "" }
            ));
        }
        if a.waited_backoff_ms > 0 {
            waited.push(format!("backoff {} ms", a.waited_backoff_ms));
        }
        let waited = if waited.is_empty() {
            String::new()
        } else {
            format!(", waited {}", waited.join(" + "))
        };
        let cause = a
            .cause
            .as_ref()
            .map(|c| format!(" [{c}]"))
            .unwrap_or_default();
        let next = if a.decision == "retry" {
            format!(" in {} ms", a.retry_in_ms)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "  run {} attempt {}  {}  {}  {status}{cause} in {} ms{waited} → {}{next}",
            a.run,
            a.attempt,
            when(a.started_at),
            a.key,
            a.latency_ms,
            a.decision
        );
    }
    if h.prompt_tokens + h.completion_tokens > 0 {
        let _ = writeln!(
            out,
            "  tokens  {} in, {} out",
            h.prompt_tokens, h.completion_tokens
        );
    }
    if let Some(result) = &h.result {
        let _ = writeln!(out, "  result  {result}");
    }
    out
}

/// Show one request's history.
pub fn run(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let path = store::locate(&args.path)?;
    let store = Store::open_existing(&path)?;
    let Some(history) = report::request_history(&store, &args.custom_id)? else {
        eprintln!(
            "error: the job in {} has no request with custom_id {:?}",
            path.display(),
            args.custom_id
        );
        return Ok(ExitCode::from(2));
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&history)?);
    } else {
        print!("{}", render(&history));
    }
    Ok(ExitCode::SUCCESS)
}
