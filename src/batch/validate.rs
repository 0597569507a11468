//! The whole-file validation pass run before anything is sent: every line checked, duplicate
//! `custom_id`s found, all problems collected with their line numbers.
//!
//! It reads through [`super::input`] and must not know the store or anything sent.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use serde::Serialize;

use crate::batch::error::{InputError, LineError};
use crate::batch::input::{InputReader, InputSpec, RawError, RawSource};
use crate::batch::request::BatchRequest;

/// The outcome of [`validate`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ValidationReport {
    /// Lines that became a request (for a duplicated `custom_id`, only its first occurrence).
    pub valid: u64,
    /// Lines with a problem (`errors.len()`).
    pub invalid: u64,
    /// All problems, in line order, at most one per line.
    pub errors: Vec<LineError>,
}

impl ValidationReport {
    /// Whether every line is valid.
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }

    /// Whether `line` is one of the invalid lines (so a second pass with [`InputReader`] can skip
    /// the duplicates it cannot detect itself).
    pub fn is_invalid(&self, line: u64) -> bool {
        self.errors.binary_search_by_key(&line, |e| e.line).is_ok()
    }

    /// A human-readable summary: the first `limit` errors, then how many more there are, e.g.
    /// `"input.jsonl: 3 invalid lines:\n  line 2: ...\n  ... and 1 more"`.
    pub fn render(&self, path: &Path, limit: usize) -> String {
        use std::fmt::Write as _;
        let path = path.display();
        if self.errors.is_empty() {
            return format!("{path}: {} valid lines, none invalid", self.valid);
        }
        let n = self.errors.len();
        let plural = if n == 1 { "line" } else { "lines" };
        let mut out = format!("{path}: {n} invalid {plural}:");
        for error in self.errors.iter().take(limit) {
            let _ = write!(out, "\n  {error}");
        }
        if n > limit {
            let _ = write!(out, "\n  ... and {} more", n - limit);
        }
        out
    }
}

/// Whole-file validation pass: streams the input once, counts valid lines, detects duplicate
/// `custom_id`s (keeping only the ids seen and their first line) and collects every line error.
///
/// `Err` only for problems with the file or the options as a whole.
pub fn validate(spec: &InputSpec) -> Result<ValidationReport, InputError> {
    let mut reader = InputReader::open(spec)?;
    let mut report = ValidationReport::default();
    let mut seen: HashMap<String, u64> = HashMap::new();
    for item in &mut reader {
        match item {
            Ok(BatchRequest {
                custom_id, line, ..
            }) => match seen.entry(custom_id) {
                Entry::Occupied(first) => report.errors.push(LineError::new(
                    line,
                    format!(
                        "duplicate custom_id `{}` (first seen on line {})",
                        first.key(),
                        first.get()
                    ),
                )),
                Entry::Vacant(slot) => {
                    slot.insert(line);
                    report.valid += 1;
                }
            },
            Err(error) => report.errors.push(error),
        }
    }
    reader.finish()?;
    report.invalid = report.errors.len() as u64;
    Ok(report)
}

/// One line of the errors file.
#[derive(Serialize)]
struct ErrorLine<'a> {
    line: u64,
    error: &'a str,
    text: &'a str,
}

/// Writes the invalid lines to `path` (created or truncated) as JSONL
/// `{"line": 12, "error": "...", "text": "<the original line>"}`, in line order, for
/// `--skip-invalid`. CSV records are written back as one CSV line.
pub fn write_errors_file(
    spec: &InputSpec,
    report: &ValidationReport,
    path: &Path,
) -> Result<(), InputError> {
    let write_err = |source| InputError::WriteErrors {
        path: path.to_path_buf(),
        source,
    };
    let file = File::create(path).map_err(write_err)?;
    let mut out = BufWriter::new(file);
    let mut pending = report.errors.iter().peekable();
    // Writes the errors of every line up to `line` (`text` gives the original text of `line`);
    // tells whether errors are left for later lines.
    let mut emit = |line: u64, text: &dyn Fn() -> String| -> Result<bool, InputError> {
        while let Some(error) = pending.next_if(|e| e.line <= line) {
            let text = if error.line == line {
                text()
            } else {
                String::new()
            };
            let record = ErrorLine {
                line: error.line,
                error: &error.message,
                text: &text,
            };
            serde_json::to_writer(&mut out, &record).map_err(|e| write_err(e.into()))?;
            out.write_all(b"\n").map_err(write_err)?;
        }
        Ok(pending.peek().is_some())
    };
    let raw_err = |e: RawError| e.into_input_error(&spec.path);
    let format = spec.format.resolve(&spec.path, spec.template.is_some());
    match RawSource::open(&spec.path, format)? {
        RawSource::Lines(mut lines) => {
            while let Some(raw) = lines.next_line().map_err(raw_err)? {
                if !emit(raw.line, &|| raw.lossy().into_owned())? {
                    break;
                }
            }
        }
        RawSource::Csv(mut csv) => {
            while let Some(line) = csv.next_record().map_err(raw_err)?.map(|item| item.line) {
                if !emit(line, &|| csv.current_text())? {
                    break;
                }
            }
        }
    }
    emit(u64::MAX, &String::new)?;
    out.flush().map_err(write_err)
}
