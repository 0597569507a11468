//! Batch input and output: reading and validating the requests of `paceline run`, and writing
//! their results in the OpenAI Batch API output format.
//!
//! - [`request`]: the validated request ([`BatchRequest`]), going to a [`crate::api::Endpoint`].
//! - [`input`]: format detection and the streaming [`InputReader`].
//! - [`template`]: `{field}` prompt templates for the lines/records/CSV input modes.
//! - [`validate()`]: the whole-file validation pass and its [`ValidationReport`].
//! - [`output`]: Batch API output records (written by the job store's output appender), and
//!   the [`OutputFormat`] choice.
//! - [`anthropic`]: Anthropic's Message Batches result lines (`--output-format anthropic`).
//! - [`error`]: the error types shared by the above.
//!
//! It must not know the store, the quota, the keys or any transport: the runner hands what it reads
//! to the engine, and the store's writer (or the distributed worker) calls [`output`] with what
//! came back. Of the engine it knows only a finished request's [`Verdict`](crate::engine::Verdict).

pub mod anthropic;
pub mod error;
pub mod input;
pub mod output;
pub mod request;
pub mod template;
pub mod validate;

pub use anthropic::{BatchResult, MessageBatchResult};
pub use error::{InputError, LineError, OutputError};
pub use input::{InputFormat, InputReader, InputSpec, starts_with_message_batches_line};
pub use output::{OutputFormat, OutputRecord, ProviderResponse, RecordError};
pub use request::BatchRequest;
pub use template::{Template, TemplateError, UnknownPlaceholder};
pub use validate::{ValidationReport, validate, write_errors_file};
