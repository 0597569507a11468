//! Logging: warnings and errors on stderr for people; with `--log-file`, one JSON event per
//! line for machines (every attempt of every request, with its waits and retry decision).
//! `PACELINE_LOG` (an `EnvFilter` directive such as `info` or `paceline::attempt=info`) filters
//! the file; stderr shows warnings unless `PACELINE_LOG` is set and no file is given.
//!
//! With an OTLP endpoint, traces go to a collector ([`otlp`]).
//!
//! It owns where log lines and spans go, not what they say: it imports nothing of paceline, and
//! must not know which modules log or what (the engine's attempt events and spans and the
//! gateway's access log and request spans are theirs).

pub mod otlp;
mod writer;

use std::io::IsTerminal;
use std::path::Path;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};
use writer::{FlushGuard, LineWriter};

/// Write every buffered log line now, waiting at most half a second: the process is about to
/// exit without dropping its [`LogGuard`] (a second Ctrl-C). Lines logged after this are
/// written at once by the thread that logs them.
pub fn flush_before_exit() {
    writer::close_all(std::time::Duration::from_millis(500));
}

/// Keeps the log file writer alive; drop it last so every event is flushed.
pub struct LogGuard {
    _file: Option<FlushGuard>,
}

/// Could not set up logging.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The log file cannot be opened.
    #[error("--log-file {path}: {source}")]
    File {
        /// The path given.
        path: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The log writer's thread could not start.
    #[error("could not start the log writer: {0}")]
    Thread(std::io::Error),
    /// `PACELINE_LOG` is not a valid filter.
    #[error("PACELINE_LOG={value:?} is not a valid log filter: {message}")]
    Filter {
        /// The variable's value.
        value: String,
        /// The parser's message.
        message: String,
    },
}

/// A writer that formats on the caller's thread and writes on a thread of its own.
fn background_writer<W: std::io::Write + Send + 'static>(
    out: W,
) -> Result<(LineWriter, FlushGuard), TelemetryError> {
    writer::spawn(out).map_err(TelemetryError::Thread)
}

fn env_filter(default: &str) -> Result<EnvFilter, TelemetryError> {
    match std::env::var("PACELINE_LOG") {
        Ok(value) => EnvFilter::try_new(&value).map_err(|e| TelemetryError::Filter {
            value,
            message: e.to_string(),
        }),
        Err(_) => Ok(EnvFilter::new(default)),
    }
}

/// Open `path` for appending log lines.
fn open_log(path: &Path) -> Result<std::fs::File, TelemetryError> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| TelemetryError::File {
            path: path.display().to_string(),
            source,
        })
}

/// One JSON object per event to `writer`, filtered by `PACELINE_LOG` (default `info`).
fn json_layer<S>(writer: LineWriter) -> Result<impl Layer<S>, TelemetryError>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    Ok(tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_writer(writer)
        .with_filter(env_filter("info")?))
}

/// Install the global subscriber. Call once, early; keep the guard until exit.
pub fn init(log_file: Option<&Path>) -> Result<LogGuard, TelemetryError> {
    let stderr_filter = if log_file.is_some() {
        EnvFilter::new("warn")
    } else {
        env_filter("warn")?
    };
    // Colour only for a person at a terminal: a file or a pipe gets plain text.
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .with_filter(stderr_filter);
    let (file_layer, guard) = match log_file {
        Some(path) => {
            let (writer, guard) = background_writer(open_log(path)?)?;
            (Some(json_layer(writer)?), Some(guard))
        }
        None => (None, None),
    };
    // A second init (tests calling the CLI in-process) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(file_layer)
        .try_init();
    Ok(LogGuard { _file: guard })
}

/// Install the global subscriber for a long-running server (`serve`): every event as one JSON
/// line (the access log, each attempt, warnings) to `log_file`, else to stderr. `PACELINE_LOG`
/// filters (default `info`).
pub fn init_json(log_file: Option<&Path>) -> Result<LogGuard, TelemetryError> {
    let (writer, guard) = match log_file {
        Some(path) => background_writer(open_log(path)?)?,
        None => background_writer(std::io::stderr())?,
    };
    let _ = tracing_subscriber::registry()
        .with(json_layer(writer)?)
        .try_init();
    Ok(LogGuard { _file: Some(guard) })
}
