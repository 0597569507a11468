//! The `paceline` binary: parse the command line, set up telemetry, dispatch to a subcommand.

use clap::Parser;
use paceline::cli::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Command::Serve(args) = &cli.command {
        builder.worker_threads(paceline::cli::serve::workers(args));
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Demo(args) => paceline::cli::demo::run(args).await,
            Command::Mock(args) => paceline::cli::mock::run(args).await,
            Command::Run(args) => paceline::cli::run::run(*args).await,
            Command::Serve(args) => paceline::cli::serve::run(args).await,
            Command::Status(args) => match (&args.redis, &args.job) {
                (Some(url), Some(job)) => paceline::cli::export::status(url, job, args.json).await,
                _ => paceline::cli::status::run(args),
            },
            Command::Export(args) => paceline::cli::export::run(args).await,
            Command::Inspect(args) => paceline::cli::inspect::run(args),
            Command::Report(args) => paceline::cli::report::run(args),
        }
    });
    // Requests abandoned after a stop timeout must not hold the process open.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
