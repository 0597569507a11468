//! The `paceline` binary: parse the command line, start the runtime, dispatch to a subcommand
//! and turn its result into the exit code.
//!
//! It knows only [`paceline::cli`] and must not know what a subcommand does.

// Stricter than the [workspace.lints] table of Cargo.toml, which tests and benches share
// (they call kill(2) and setrlimit(2), and unwrap freely): no unsafe code but the one call
// to glibc's `mallopt` below, and no unwrap (what a user or a provider sends must not panic;
// an invariant uses `expect` and says why). Unit tests may unwrap (clippy.toml).
#![deny(unsafe_code)]
#![warn(clippy::unwrap_used)]

use clap::Parser;
use paceline::cli::{Cli, Command};
use std::future::Future;
use std::process::ExitCode;

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    match cli.command {
        // `serve` sizes its runtime from its configuration: read it once, before the runtime.
        Command::Serve(args) => match args.raw_config() {
            Ok(raw) => {
                // A 0 is refused by `serve::run`, with the field named.
                builder.worker_threads(raw.workers().max(1));
                block_on(builder, paceline::cli::serve::run(*args, raw))
            }
            Err(err) => fail(&err),
        },
        Command::Demo(args) => block_on(builder, paceline::cli::demo::run(args)),
        Command::Mock(args) => block_on(builder, paceline::cli::mock::run(args)),
        Command::Run(args) => block_on(builder, paceline::cli::run::run(*args)),
        Command::Plan(args) => block_on(builder, async { paceline::cli::plan::run(*args) }),
        Command::Status(args) => block_on(builder, async move {
            match (&args.redis, &args.job) {
                (Some(url), Some(job)) => {
                    paceline::cli::export::status(url, &args.redis_access, job, args.json).await
                }
                _ => paceline::cli::status::run(args),
            }
        }),
        Command::Export(args) => block_on(builder, paceline::cli::export::run(args)),
        Command::Inspect(args) => block_on(builder, async { paceline::cli::inspect::run(args) }),
        Command::Report(args) => block_on(builder, async { paceline::cli::report::run(args) }),
    }
}

/// Two malloc arenas at most, set before any thread starts. glibc gives threads that contend
/// for the allocator arenas of their own, up to eight per core, and keeps what each one freed:
/// the burst of upstream connections at the start of a long run left ~8 MB in arenas that
/// the rest of the run never reused (1,000,000 requests: peak RSS 85–96 MB with glibc's
/// default, 79–88 MB with two; ARCHITECTURE.md, "What a long `run` holds in memory").
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code, reason = "mallopt(3) is glibc's documented tuning call")]
fn limit_malloc_arenas() {
    // SAFETY: mallopt takes two integers and touches only the allocator's own settings; it is
    // called before the runtime starts any thread. A refusal (0) leaves glibc's default.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

/// Run a subcommand on the runtime `builder` makes, and turn its result into the exit code.
fn block_on(
    mut builder: tokio::runtime::Builder,
    command: impl Future<Output = anyhow::Result<ExitCode>>,
) -> ExitCode {
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(command);
    // Requests abandoned after a stop timeout must not hold the process open.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(code) => code,
        Err(err) => fail(&err),
    }
}

/// Report a user-facing error with its causes; exit code 2. A cause the message above it
/// already ends with (`cannot read input X: <the I/O error>`) is not repeated.
fn fail(err: &anyhow::Error) -> ExitCode {
    let mut text = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !text.ends_with(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    eprintln!("error: {text}");
    ExitCode::from(2)
}
