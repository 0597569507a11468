//! Command-line surface: one file per subcommand, holding its argument struct and the glue that
//! turns arguments into library calls. No business logic lives here.
//!
//! Only `main` imports it: nothing in the library may depend on the command line.

pub mod demo;
pub mod export;
pub mod inspect;
pub mod mock;
pub mod plan;
pub mod redis;
pub mod report;
pub mod run;
pub mod serve;
pub mod status;

use clap::{Parser, Subcommand};

/// paceline: every LLM API request through at the highest rate the provider allows.
#[derive(Debug, Parser)]
#[command(name = "paceline", version, about, long_about = None)]
pub struct Cli {
    /// The subcommand to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the 200-topic demo against the built-in simulated provider (no API key needed).
    Demo(demo::DemoArgs),
    /// Run a simulated LLM provider that limits, answers and fails like a real one.
    Mock(mock::MockArgs),
    /// Run a batch of requests (Batch API JSONL, or lines + a prompt template) to the end;
    /// the same command again resumes it.
    Run(Box<run::RunArgs>),
    /// What a job will cost and take, live and through the provider's Batch API (sends nothing;
    /// takes run's flags).
    Plan(Box<plan::PlanArgs>),
    /// Run an OpenAI-compatible gateway that queues, paces, retries and spreads requests over keys.
    Serve(Box<serve::ServeArgs>),
    /// Show a job's progress from its state (the state database or the output file).
    Status(status::StatusArgs),
    /// Show the whole attempt history of one request of a job.
    Inspect(inspect::InspectArgs),
    /// Write a job's report: one self-contained HTML page of rates, limits, 429s, retries,
    /// latency, keys and failures.
    Report(report::ReportArgs),
    /// Write the results of a job shared through Redis (`run --redis URL --job NAME`).
    Export(export::ExportArgs),
}

/// Print `listening on http://ADDR` as the first line on stdout, flushed (tests and scripts
/// wait for it).
pub fn announce(addr: std::net::SocketAddr) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on http://{addr}")?;
    out.flush()
}

/// Wait for Ctrl-C or SIGTERM.
pub async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
