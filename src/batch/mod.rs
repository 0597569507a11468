//! Batch input: reading and validating the requests of `paceline run`.
//!
//! - [`request`]: the validated request ([`BatchRequest`]) and its [`Endpoint`].
//! - [`input`]: format detection and the streaming [`InputReader`].
//! - [`template`]: `{field}` prompt templates for the lines/records/CSV input modes.
//! - [`validate()`]: the whole-file validation pass and its [`ValidationReport`].
//! - [`error`]: the error types shared by the above.

pub mod error;
pub mod input;
pub mod request;
pub mod template;
pub mod validate;

pub use error::{InputError, LineError};
pub use input::{InputFormat, InputReader, InputSpec};
pub use request::{BatchRequest, Endpoint};
pub use template::{Template, TemplateError, UnknownPlaceholder};
pub use validate::{ValidationReport, validate, write_errors_file};
