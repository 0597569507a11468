//! `paceline report PATH -o report.html`: a job's report as one self-contained HTML file.
//!
//! Arguments only: what the page shows is [`crate::report`]'s.

use crate::report;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `paceline report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The state database, or the output file it sits beside.
    pub path: PathBuf,
    /// Where to write the page.
    #[arg(short, long, default_value = "report.html")]
    pub output: PathBuf,
}

/// Write a job's report.
pub fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let figures = report::write(&args.path, &args.output)?;
    println!(
        "paceline: report of {} ({} requests, {} attempts) written to {}",
        figures.job.state_path,
        figures.job.total,
        figures.totals.attempts,
        args.output.display()
    );
    Ok(ExitCode::SUCCESS)
}
