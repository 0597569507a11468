//! Errors of the batch input and output: per-line problems ([`LineError`]), problems with the
//! input as a whole ([`InputError`]) and with the output file ([`OutputError`]).
//!
//! It must not know what is done about an error (the runner and the command line report it).

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::batch::template::TemplateError;

/// A problem with one input line; the line is skipped (or the run refused), the rest goes on.
///
/// Displays as `line 12: missing field `custom_id``.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number in the input file (for CSV, the line where the record starts).
    pub line: u64,
    /// What is wrong with the line, without the line number.
    pub message: String,
}

impl LineError {
    /// A problem found on `line`.
    pub fn new(line: u64, message: impl Into<String>) -> Self {
        Self {
            line,
            message: message.into(),
        }
    }
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for LineError {}

/// A problem with the input as a whole (or with the options describing it): nothing can be read.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The input file cannot be opened.
    #[error("cannot open input {}: {source}", path.display())]
    Open {
        /// The input file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// Reading the input failed part-way.
    #[error("cannot read input {} at line {line}: {source}", path.display())]
    Read {
        /// The input file.
        path: PathBuf,
        /// The line being read when the error happened.
        line: u64,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// The input's CSV header row is not UTF-8 text (a line or record that is not is a
    /// [`LineError`]).
    #[error("input {}: line {line} is not valid UTF-8", path.display())]
    NotUtf8 {
        /// The input file.
        path: PathBuf,
        /// The line holding invalid UTF-8.
        line: u64,
    },
    /// Batch API JSONL was expected (no template given) but the file looks like plain text.
    #[error(
        "input {}: line {line} is plain text, not Batch API JSONL; to send one request per line, \
         pass --template (e.g. --template 'Write an article about {{line}}') and --model",
        path.display()
    )]
    NeedsTemplate {
        /// The input file.
        path: PathBuf,
        /// The first non-blank line, which is not JSON.
        line: u64,
    },
    /// Template mode was asked for without a model.
    #[error("a --template needs a model to send it to: pass --model (e.g. --model gpt-4o-mini)")]
    MissingModel,
    /// The template itself is malformed.
    #[error("invalid --template: {0}")]
    Template(#[from] TemplateError),
    /// The options contradict each other (e.g. `--system` for embeddings).
    #[error("{0}")]
    Options(String),
    /// The errors file of `--skip-invalid` cannot be written.
    #[error("cannot write errors file {}: {source}", path.display())]
    WriteErrors {
        /// The errors file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
}

/// A problem with the output file; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The output file cannot be opened or created (or its torn last line cannot be repaired).
    #[error("cannot open output {}: {source}", path.display())]
    Open {
        /// The output file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// Writing or flushing a record failed.
    #[error("cannot write output {}: {source}", path.display())]
    Write {
        /// The output file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
}
