//! `paceline mock`: arguments and glue for the simulated provider.

use clap::Args;
use std::process::ExitCode;

/// Arguments of `paceline mock`.
#[derive(Debug, Args)]
pub struct MockArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8089")]
    pub listen: String,
}

/// Start the simulated provider and serve until interrupted.
pub async fn run(_args: MockArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}
