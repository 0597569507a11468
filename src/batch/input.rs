//! Reading the input of `paceline run`: format detection and a streaming reader that turns each
//! non-blank line (or CSV record) into a checked [`BatchRequest`] or a [`LineError`].
//!
//! The file is read incrementally through a `BufReader`, one line (record) at a time, never whole.
//!
//! It must not know the store or anything sent: it yields requests, and its callers (validation,
//! the feeder, the distributed queue) decide what becomes of them.

use std::borrow::Cow;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde_json::{Map, Value, json};

use crate::api::Endpoint;
use crate::batch::error::{InputError, LineError};
use crate::batch::request::{BatchRequest, is_message_batches, parse_json_object};
use crate::batch::template::{Template, UnknownPlaceholder};

/// Whether `spec`'s first non-blank line is an Anthropic Message Batches line
/// (`{"custom_id", "params"}` with no `url` or `method`): a job written that way speaks
/// Anthropic's API. Anything unreadable says no (reading the input reports it properly).
pub fn starts_with_message_batches_line(spec: &InputSpec) -> bool {
    if spec.format.resolve(&spec.path, spec.template.is_some()) != InputFormat::BatchJsonl {
        return false;
    }
    let Ok(file) = File::open(&spec.path) else {
        return false;
    };
    let first = BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .find(|text| !text.trim().is_empty());
    first.is_some_and(|text| parse_json_object(&text, 1).is_ok_and(|map| is_message_batches(&map)))
}

/// The shape of the input file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InputFormat {
    /// Decide from the options and the file name: with a template, `.csv` → [`Csv`](Self::Csv),
    /// `.jsonl`/`.json` → [`RecordsJsonl`](Self::RecordsJsonl), anything else →
    /// [`Lines`](Self::Lines); without a template → [`BatchJsonl`](Self::BatchJsonl).
    #[default]
    Auto,
    /// OpenAI Batch API JSONL: `{"custom_id", "method", "url", "body"}` per line.
    BatchJsonl,
    /// Plain text, one item per non-blank line, rendered through the template as `{line}`.
    Lines,
    /// One JSON object per line; its fields fill the template's placeholders.
    RecordsJsonl,
    /// CSV with a header row naming the fields that fill the template's placeholders.
    Csv,
}

impl InputFormat {
    /// The name used on the command line (`auto`, `batch-jsonl`, `lines`, `records-jsonl`, `csv`).
    pub fn name(&self) -> &'static str {
        match self {
            InputFormat::Auto => "auto",
            InputFormat::BatchJsonl => "batch-jsonl",
            InputFormat::Lines => "lines",
            InputFormat::RecordsJsonl => "records-jsonl",
            InputFormat::Csv => "csv",
        }
    }

    /// The concrete format for `path` and whether a template is given ([`Auto`](Self::Auto)
    /// resolved; other formats are returned unchanged).
    pub fn resolve(self, path: &Path, has_template: bool) -> InputFormat {
        if self != InputFormat::Auto {
            return self;
        }
        if !has_template {
            return InputFormat::BatchJsonl;
        }
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("csv") => InputFormat::Csv,
            Some("jsonl" | "json") => InputFormat::RecordsJsonl,
            _ => InputFormat::Lines,
        }
    }
}

impl fmt::Display for InputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for InputFormat {
    type Err = String;

    /// Parses a command-line name (see [`InputFormat::name`]).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            InputFormat::Auto,
            InputFormat::BatchJsonl,
            InputFormat::Lines,
            InputFormat::RecordsJsonl,
            InputFormat::Csv,
        ]
        .into_iter()
        .find(|f| f.name() == s)
        .ok_or_else(|| {
            format!("unknown input format `{s}` (auto, batch-jsonl, lines, records-jsonl, csv)")
        })
    }
}

/// How to read the input.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InputSpec {
    /// The input file.
    pub path: PathBuf,
    /// Its format; [`InputFormat::Auto`] decides from `template` and the file name.
    pub format: InputFormat,
    /// Prompt template with `{field}` placeholders; setting it selects template mode.
    pub template: Option<String>,
    /// The model of every request in template mode (required there).
    pub model: Option<String>,
    /// System prompt in template mode (chat: a system message; responses: `instructions`).
    pub system: Option<String>,
    /// `max_tokens` in template mode (responses: `max_output_tokens`).
    pub max_tokens: Option<u64>,
    /// In template mode, the field whose value is the `custom_id` (default: the line number).
    pub id_field: Option<String>,
    /// The endpoint of every request in template mode (default chat completions).
    pub endpoint: Endpoint,
}

impl InputSpec {
    /// A spec for `path` with everything else at its default (Batch API JSONL unless a template
    /// is set later).
    pub fn new(path: impl Into<PathBuf>) -> InputSpec {
        InputSpec {
            path: path.into(),
            ..InputSpec::default()
        }
    }
}

/// Streaming reader: yields one `Result<BatchRequest, LineError>` per non-blank input line (per
/// CSV record), in file order, reading the file incrementally.
///
/// Duplicate `custom_id`s are not detected here (that needs state across lines); see
/// [`validate`](crate::batch::validate()). A line (or CSV record) that is not UTF-8 is a
/// [`LineError`] like any other. A problem with the file itself (an I/O error, a CSV header row
/// that is not UTF-8) ends the iteration early; call [`InputReader::finish`] afterwards to get
/// it.
pub struct InputReader {
    path: PathBuf,
    format: InputFormat,
    source: RawSource,
    mode: Mode,
    fatal: Option<InputError>,
    done: bool,
}

impl fmt::Debug for InputReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InputReader")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl InputReader {
    /// Opens the input described by `spec`, checking the options (a template needs a model; a
    /// plain-text file without a template is refused with a hint to pass `--template`).
    pub fn open(spec: &InputSpec) -> Result<InputReader, InputError> {
        let format = spec.format.resolve(&spec.path, spec.template.is_some());
        let mode = Mode::from_spec(spec, format)?;
        let source = RawSource::open(&spec.path, format)?;
        Ok(InputReader {
            path: spec.path.clone(),
            format,
            source,
            mode,
            fatal: None,
            done: false,
        })
    }

    /// The input file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The concrete format being read ([`InputFormat::Auto`] resolved).
    pub fn format(&self) -> InputFormat {
        self.format
    }

    /// After iteration: `Err` with the problem that stopped it early, if the file could not be
    /// read to the end; `Ok` if every line was read.
    pub fn finish(self) -> Result<(), InputError> {
        match self.fatal {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

impl Iterator for InputReader {
    type Item = Result<BatchRequest, LineError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let mode = &self.mode;
        let item = match &mut self.source {
            RawSource::Lines(src) => src.next_line().map(|raw| {
                raw.map(|raw| {
                    raw.text()
                        .and_then(|text| mode.request_from_text(raw.line, text))
                })
            }),
            RawSource::Csv(src) => src.next_record().map(|raw| {
                raw.map(|CsvItem { line, problem }| match problem {
                    None => mode.request_from_csv(line, &src.headers, &src.record),
                    Some(message) => Err(LineError::new(line, message)),
                })
            }),
        };
        match item {
            Ok(Some(item)) => Some(item),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(err) => {
                self.done = true;
                self.fatal = Some(err.into_input_error(&self.path));
                None
            }
        }
    }
}

/// How each line becomes a request.
enum Mode {
    /// The line is a Batch API request.
    Batch,
    /// The line is an item rendered through a template.
    Template(Box<TemplateMode>),
}

/// Everything template mode needs to build a request from an item.
struct TemplateMode {
    template: Template,
    /// Lines or RecordsJsonl or Csv.
    format: InputFormat,
    model: String,
    system: Option<String>,
    max_tokens: Option<u64>,
    id_field: Option<String>,
    endpoint: Endpoint,
}

impl Mode {
    fn from_spec(spec: &InputSpec, format: InputFormat) -> Result<Mode, InputError> {
        let Some(source) = &spec.template else {
            if format != InputFormat::BatchJsonl {
                return Err(InputError::Options(format!(
                    "input format {format} needs a --template (with {{field}} placeholders)"
                )));
            }
            let template_only = [
                ("--model", spec.model.is_some()),
                ("--system", spec.system.is_some()),
                ("--max-tokens", spec.max_tokens.is_some()),
                ("--id-field", spec.id_field.is_some()),
            ];
            if let Some((flag, _)) = template_only.iter().find(|(_, given)| *given) {
                return Err(InputError::Options(format!(
                    "{flag} applies only with --template; Batch API JSONL lines are complete \
                     requests (custom_id, url and body)"
                )));
            }
            return Ok(Mode::Batch);
        };
        if format == InputFormat::BatchJsonl {
            return Err(InputError::Options(
                "--template cannot be used with Batch API JSONL input (its lines are complete \
                 requests); use --format lines, records-jsonl or csv"
                    .to_owned(),
            ));
        }
        let model = match &spec.model {
            Some(model) if !model.is_empty() => model.clone(),
            _ => return Err(InputError::MissingModel),
        };
        let endpoint = spec.endpoint;
        let refuse = |flag: &str| {
            Err(InputError::Options(format!(
                "{flag} has no meaning for {endpoint}"
            )))
        };
        match endpoint {
            Endpoint::Embeddings if spec.system.is_some() => return refuse("--system"),
            Endpoint::Embeddings if spec.max_tokens.is_some() => return refuse("--max-tokens"),
            Endpoint::Completions if spec.system.is_some() => return refuse("--system"),
            _ => {}
        }
        Ok(Mode::Template(Box::new(TemplateMode {
            template: Template::parse(source)?,
            format,
            model,
            system: spec.system.clone(),
            max_tokens: spec.max_tokens,
            id_field: spec.id_field.clone(),
            endpoint,
        })))
    }

    /// A request from one non-blank text line (Batch JSONL, Lines or RecordsJsonl).
    fn request_from_text(&self, line: u64, text: &str) -> Result<BatchRequest, LineError> {
        match self {
            Mode::Batch => BatchRequest::parse_batch_line(text, line),
            Mode::Template(t) if t.format == InputFormat::Lines => {
                let item = text.trim_ascii();
                t.build(
                    line,
                    |name| (name == "line").then_some(Cow::Borrowed(item)),
                    || vec!["line".to_owned()],
                )
            }
            Mode::Template(t) => {
                let record = parse_json_object(text, line)?;
                t.build(
                    line,
                    |name| record.get(name).map(field_text),
                    || record.keys().cloned().collect(),
                )
            }
        }
    }

    /// A request from one CSV record.
    fn request_from_csv(
        &self,
        line: u64,
        headers: &csv::StringRecord,
        record: &csv::StringRecord,
    ) -> Result<BatchRequest, LineError> {
        let Mode::Template(t) = self else {
            return Err(LineError::new(line, "CSV input needs a --template"));
        };
        t.build(
            line,
            |name| {
                headers
                    .iter()
                    .position(|h| h == name)
                    .and_then(|i| record.get(i))
                    .map(Cow::Borrowed)
            },
            || headers.iter().map(str::to_owned).collect(),
        )
    }
}

impl TemplateMode {
    /// Renders the prompt and builds the request; `lookup` gives a field's text, `names` lists
    /// the available fields for error messages.
    fn build<'a>(
        &self,
        line: u64,
        mut lookup: impl FnMut(&str) -> Option<Cow<'a, str>>,
        names: impl Fn() -> Vec<String>,
    ) -> Result<BatchRequest, LineError> {
        let available = || {
            let names = names();
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        };
        let prompt = self
            .template
            .render(&mut lookup)
            .map_err(|UnknownPlaceholder(name)| {
                LineError::new(
                    line,
                    format!(
                        "unknown placeholder `{{{name}}}` in template (available fields: {})",
                        available()
                    ),
                )
            })?;
        let custom_id = match &self.id_field {
            None => line.to_string(),
            Some(field) => match lookup(field) {
                None => {
                    return Err(LineError::new(
                        line,
                        format!(
                            "missing id field `{field}` (available fields: {})",
                            available()
                        ),
                    ));
                }
                Some(id) if id.is_empty() => {
                    return Err(LineError::new(line, format!("id field `{field}` is empty")));
                }
                Some(id) => id.into_owned(),
            },
        };
        Ok(BatchRequest {
            custom_id,
            endpoint: self.endpoint,
            body: self.body(prompt),
            line,
        })
    }

    /// The request body for a rendered prompt.
    fn body(&self, prompt: String) -> Value {
        let mut body = Map::new();
        body.insert("model".to_owned(), Value::String(self.model.clone()));
        match self.endpoint {
            Endpoint::ChatCompletions => {
                let mut messages = Vec::with_capacity(2);
                if let Some(system) = &self.system {
                    messages.push(json!({"role": "system", "content": system}));
                }
                messages.push(json!({"role": "user", "content": prompt}));
                body.insert("messages".to_owned(), Value::Array(messages));
                if let Some(n) = self.max_tokens {
                    body.insert("max_tokens".to_owned(), n.into());
                }
            }
            Endpoint::Completions => {
                body.insert("prompt".to_owned(), Value::String(prompt));
                if let Some(n) = self.max_tokens {
                    body.insert("max_tokens".to_owned(), n.into());
                }
            }
            Endpoint::Embeddings => {
                body.insert("input".to_owned(), Value::String(prompt));
            }
            Endpoint::Messages => {
                if let Some(system) = &self.system {
                    body.insert("system".to_owned(), Value::String(system.clone()));
                }
                body.insert(
                    "messages".to_owned(),
                    json!([{"role": "user", "content": prompt}]),
                );
                let max_tokens = self.max_tokens.unwrap_or(crate::tokens::DEFAULT_MAX_TOKENS);
                body.insert("max_tokens".to_owned(), max_tokens.into());
            }
            Endpoint::Responses => {
                if let Some(system) = &self.system {
                    body.insert("instructions".to_owned(), Value::String(system.clone()));
                }
                body.insert("input".to_owned(), Value::String(prompt));
                if let Some(n) = self.max_tokens {
                    body.insert("max_output_tokens".to_owned(), n.into());
                }
            }
        }
        Value::Object(body)
    }
}

/// A record field as template text: strings raw, everything else as JSON text.
fn field_text(value: &Value) -> Cow<'_, str> {
    match value {
        Value::String(s) => Cow::Borrowed(s),
        other => Cow::Owned(other.to_string()),
    }
}

/// A problem reading the file itself (not one line's content).
#[derive(Debug)]
pub(crate) enum RawError {
    Io { line: u64, source: io::Error },
    NotUtf8 { line: u64 },
    NeedsTemplate { line: u64 },
}

impl RawError {
    pub(crate) fn into_input_error(self, path: &Path) -> InputError {
        let path = path.to_path_buf();
        match self {
            RawError::Io { line, source } => InputError::Read { path, line, source },
            RawError::NotUtf8 { line } => InputError::NotUtf8 { path, line },
            RawError::NeedsTemplate { line } => InputError::NeedsTemplate { path, line },
        }
    }
}

/// The file as a sequence of raw items: non-blank lines or CSV records.
pub(crate) enum RawSource {
    Lines(LineSource),
    Csv(CsvSource),
}

impl RawSource {
    /// Opens `path` for `format` (which must be resolved).
    pub(crate) fn open(path: &Path, format: InputFormat) -> Result<RawSource, InputError> {
        let file = File::open(path).map_err(|source| InputError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let reader = BufReader::with_capacity(64 * 1024, file);
        if format == InputFormat::Csv {
            return CsvSource::new(reader)
                .map(RawSource::Csv)
                .map_err(|e| e.into_input_error(path));
        }
        let mut lines = LineSource::new(reader);
        if format == InputFormat::BatchJsonl {
            lines
                .check_not_plain_text()
                .map_err(|e| e.into_input_error(path))?;
        }
        Ok(RawSource::Lines(lines))
    }
}

/// One non-blank line as read: its 1-based number and its bytes, without the line ending.
pub(crate) struct RawLine<'a> {
    /// The line's number.
    pub(crate) line: u64,
    bytes: &'a [u8],
}

impl<'a> RawLine<'a> {
    /// The line as text, or why it is not: a line that is not UTF-8 is a problem of that line
    /// alone (listed, or skipped with `--skip-invalid`), not of the whole file.
    pub(crate) fn text(&self) -> Result<&'a str, LineError> {
        std::str::from_utf8(self.bytes).map_err(|err| {
            LineError::new(
                self.line,
                format!(
                    "not valid UTF-8 text (the first invalid byte is byte {} of the line)",
                    err.valid_up_to() + 1
                ),
            )
        })
    }

    /// The line as text, its invalid bytes replaced (for the errors file).
    pub(crate) fn lossy(&self) -> Cow<'a, str> {
        String::from_utf8_lossy(self.bytes)
    }
}

/// Non-blank lines of a text file, with their 1-based numbers; the buffer is reused.
pub(crate) struct LineSource {
    reader: BufReader<File>,
    buf: Vec<u8>,
    line: u64,
}

impl LineSource {
    fn new(reader: BufReader<File>) -> LineSource {
        LineSource {
            reader,
            buf: Vec::with_capacity(4096),
            line: 0,
        }
    }

    /// The next non-blank line without its line ending (and without a leading byte-order mark
    /// on line 1), or `None` at the end of the file.
    pub(crate) fn next_line(&mut self) -> Result<Option<RawLine<'_>>, RawError> {
        let (start, end) = loop {
            self.buf.clear();
            let read = self
                .reader
                .read_until(b'\n', &mut self.buf)
                .map_err(|source| RawError::Io {
                    line: self.line + 1,
                    source,
                })?;
            if read == 0 {
                return Ok(None);
            }
            self.line += 1;
            let start = if self.line == 1 && self.buf.starts_with(b"\xEF\xBB\xBF") {
                3
            } else {
                0
            };
            let mut end = self.buf.len();
            while end > start && matches!(self.buf[end - 1], b'\n' | b'\r') {
                end -= 1;
            }
            if !self.buf[start..end].iter().all(u8::is_ascii_whitespace) {
                break (start, end);
            }
        };
        Ok(Some(RawLine {
            line: self.line,
            bytes: &self.buf[start..end],
        }))
    }

    /// Peeks at the first non-blank line: if it is not JSON-looking (does not start with `{` or
    /// `[`), the file is plain text given without a template. Rewinds afterwards.
    fn check_not_plain_text(&mut self) -> Result<(), RawError> {
        if let Some(raw) = self.next_line()?
            && !raw.lossy().trim_start().starts_with(['{', '['])
        {
            return Err(RawError::NeedsTemplate { line: raw.line });
        }
        self.reader
            .seek(SeekFrom::Start(0))
            .map_err(|source| RawError::Io { line: 1, source })?;
        self.line = 0;
        Ok(())
    }
}

/// What [`CsvSource::next_record`] read.
pub(crate) struct CsvItem {
    /// The line the record starts on.
    pub(crate) line: u64,
    /// A problem with the record's shape, if any.
    pub(crate) problem: Option<String>,
}

/// CSV records (after the header row), with the line each starts on; the record is reused.
pub(crate) struct CsvSource {
    reader: csv::Reader<BufReader<File>>,
    /// The header row: the field names.
    pub(crate) headers: csv::StringRecord,
    /// The record last read by [`CsvSource::next_record`].
    pub(crate) record: csv::StringRecord,
    /// The file's length in bytes.
    len: u64,
    /// Whether the file's last byte is a newline (else its last record is unterminated).
    ends_with_newline: bool,
    /// Whether lines end in `\r\n` (the csv crate then leaves a record's `\n` for the next read).
    crlf: bool,
}

impl CsvSource {
    fn new(mut reader: BufReader<File>) -> Result<CsvSource, RawError> {
        let io_err = |source| RawError::Io { line: 1, source };
        let len = reader.get_ref().metadata().map_err(io_err)?.len();
        let mut ends_with_newline = true;
        if len > 0 {
            let mut last = [0u8; 1];
            reader.seek(SeekFrom::End(-1)).map_err(io_err)?;
            reader.read_exact(&mut last).map_err(io_err)?;
            reader.rewind().map_err(io_err)?;
            ends_with_newline = last[0] == b'\n';
        }
        // Line endings, judged by the first line (the header).
        let head = reader.fill_buf().map_err(io_err)?;
        let crlf = head
            .iter()
            .position(|&b| b == b'\n')
            .is_some_and(|i| i > 0 && head[i - 1] == b'\r');
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(reader);
        let headers = reader.headers().map_err(|e| csv_raw_error(e, 1))?.clone();
        Ok(CsvSource {
            reader,
            headers,
            record: csv::StringRecord::new(),
            len,
            ends_with_newline,
            crlf,
        })
    }

    /// Reads the next record into `record` and tells where it starts and whether it has a problem
    /// of its own (e.g. a wrong number of fields); `None` at the end of the file.
    pub(crate) fn next_record(&mut self) -> Result<Option<CsvItem>, RawError> {
        let before = self.reader.position().line();
        // Read as bytes (the record's buffer reused), then decoded: a record that is not UTF-8
        // is a problem of that record alone.
        let mut bytes = std::mem::take(&mut self.record).into_byte_record();
        let mut problem = match self.reader.read_byte_record(&mut bytes) {
            Ok(false) => return Ok(None),
            Ok(true) => None,
            Err(err) => match err.kind() {
                csv::ErrorKind::UnequalLengths {
                    expected_len, len, ..
                } => Some(format!(
                    "expected {expected_len} CSV fields (as in the header), found {len}"
                )),
                _ => return Err(csv_raw_error(err, before)),
            },
        };
        self.record = match csv::StringRecord::from_byte_record(bytes) {
            Ok(record) => record,
            Err(err) => {
                let field = err.utf8_error().field() + 1;
                problem.get_or_insert_with(|| format!("not valid UTF-8 text (CSV field {field})"));
                err.into_byte_record()
                    .iter()
                    .map(String::from_utf8_lossy)
                    .collect()
            }
        };
        Ok(Some(CsvItem {
            line: self.record_start_line(before),
            problem,
        }))
    }

    /// The line the record just read starts on. The csv crate positions a record where reading
    /// began, before any blank lines it skipped; so count back from where reading ended instead:
    /// minus the newlines inside the record's fields and the record's own `\n` when this read
    /// consumed it (with `\r\n` endings the `\n` is consumed by the next read).
    fn record_start_line(&self, before: u64) -> u64 {
        let after = self.reader.position();
        let inner: u64 = self
            .record
            .iter()
            .map(|field| field.bytes().filter(|&b| b == b'\n').count() as u64)
            .sum();
        let unterminated = after.byte() >= self.len && !self.ends_with_newline;
        let own_newline = u64::from(!self.crlf && !unterminated);
        after
            .line()
            .saturating_sub(inner + own_newline)
            .max(before)
            .max(1)
    }

    /// The current record re-encoded as one CSV line (for the errors file).
    pub(crate) fn current_text(&self) -> String {
        let mut writer = csv::WriterBuilder::new()
            .flexible(true)
            .from_writer(Vec::new());
        let bytes = match writer.write_record(&self.record) {
            Ok(()) => writer.into_inner().unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        String::from_utf8_lossy(&bytes)
            .trim_end_matches(['\r', '\n'])
            .to_owned()
    }
}

/// Maps a csv error that concerns the file (I/O, UTF-8) to a [`RawError`].
fn csv_raw_error(err: csv::Error, fallback_line: u64) -> RawError {
    let line = err.position().map_or(fallback_line, csv::Position::line);
    match err.into_kind() {
        csv::ErrorKind::Io(source) => RawError::Io { line, source },
        csv::ErrorKind::Utf8 { .. } => RawError::NotUtf8 { line },
        other => RawError::Io {
            line,
            source: io::Error::new(io::ErrorKind::InvalidData, format!("{other:?}")),
        },
    }
}
