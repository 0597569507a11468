//! The output file of `paceline run`, in the OpenAI Batch API output format: one JSON line per
//! `custom_id`,
//! `{"id": "batch_req_…", "custom_id": …, "response": {"status_code", "request_id", "body"} | null,
//! "error": {"code", "message"} | null}`.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rand::Rng;
use rand::distr::Alphanumeric;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::batch::error::OutputError;

/// The provider's answer to a request, as recorded in the output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderResponse {
    /// The HTTP status code.
    pub status_code: u16,
    /// The provider's request id (the `x-request-id` header), or empty if it sent none.
    pub request_id: String,
    /// The response body: its JSON value, or a JSON string holding the text when it was not JSON
    /// (see [`ProviderResponse::body_from_bytes`]).
    pub body: Value,
}

impl ProviderResponse {
    /// A provider response from its parts.
    pub fn new(status_code: u16, request_id: impl Into<String>, body: Value) -> Self {
        Self {
            status_code,
            request_id: request_id.into(),
            body,
        }
    }

    /// A response body as recorded: the parsed JSON when `bytes` is JSON, otherwise the text
    /// (invalid UTF-8 replaced) as a JSON string.
    pub fn body_from_bytes(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
    }
}

/// Why a request finally failed, as recorded in the output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordError {
    /// A machine-readable code, e.g. `insufficient_quota`, `max_attempts_exceeded`.
    pub code: String,
    /// A human-readable explanation.
    pub message: String,
}

/// One line of the output file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputRecord {
    /// `batch_req_` followed by 24 random alphanumeric characters.
    pub id: String,
    /// The request's `custom_id`.
    pub custom_id: String,
    /// The provider's response, when there was one (serialized as `null` otherwise).
    pub response: Option<ProviderResponse>,
    /// Why the request failed, or `null` for a success.
    pub error: Option<RecordError>,
}

impl OutputRecord {
    /// A successful request: the provider's status, request id and body, `"error": null`.
    pub fn success(
        custom_id: impl Into<String>,
        status_code: u16,
        request_id: impl Into<String>,
        body: Value,
    ) -> Self {
        Self {
            id: new_record_id(),
            custom_id: custom_id.into(),
            response: Some(ProviderResponse::new(status_code, request_id, body)),
            error: None,
        }
    }

    /// A final failure: keeps the provider's last response when there was one (else
    /// `"response": null`) and sets `"error": {"code", "message"}`.
    pub fn failure(
        custom_id: impl Into<String>,
        response: Option<ProviderResponse>,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            id: new_record_id(),
            custom_id: custom_id.into(),
            response,
            error: Some(RecordError {
                code: code.into(),
                message: message.into(),
            }),
        }
    }

    /// Whether this record is a success (`error` is null).
    pub fn is_success(&self) -> bool {
        self.error.is_none()
    }
}

/// A fresh output record id: `batch_req_` + 24 random alphanumeric characters.
pub fn new_record_id() -> String {
    let mut id = String::with_capacity(34);
    id.push_str("batch_req_");
    id.extend(
        rand::rng()
            .sample_iter(Alphanumeric)
            .take(24)
            .map(char::from),
    );
    id
}

/// Appends output records to a file, one JSON line each, through a buffer.
///
/// Records reach the file when the buffer fills, on [`flush`](Self::flush) /
/// [`sync`](Self::sync), and when the writer is dropped (errors then are lost: flush first).
#[derive(Debug)]
pub struct OutputWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl OutputWriter {
    /// Opens `path` for appending, creating it if needed. If the file ends in a torn record (a
    /// last line without its newline, left by a crash mid-write), that partial line is cut off
    /// so the next record starts on a line of its own; complete lines are never touched.
    pub fn open(path: &Path) -> Result<OutputWriter, OutputError> {
        let open_err = |source| OutputError::Open {
            path: path.to_path_buf(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(open_err)?;
        cut_torn_tail(&mut file).map_err(open_err)?;
        Ok(OutputWriter {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(64 * 1024, file),
        })
    }

    /// The output file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one record as exactly one line.
    pub fn write(&mut self, record: &OutputRecord) -> Result<(), OutputError> {
        serde_json::to_writer(&mut self.out, record)
            .map_err(io::Error::from)
            .and_then(|()| self.out.write_all(b"\n"))
            .map_err(|source| self.write_err(source))
    }

    /// Pushes buffered records to the operating system.
    pub fn flush(&mut self) -> Result<(), OutputError> {
        self.out.flush().map_err(|source| self.write_err(source))
    }

    /// Flushes and then asks the operating system to put the data on disk (`fsync`), so the
    /// records survive a power loss as well as a crash.
    pub fn sync(&mut self) -> Result<(), OutputError> {
        self.flush()?;
        self.out
            .get_ref()
            .sync_data()
            .map_err(|source| self.write_err(source))
    }

    fn write_err(&self, source: io::Error) -> OutputError {
        OutputError::Write {
            path: self.path.clone(),
            source,
        }
    }
}

/// Truncates `file` after its last newline when its last byte is not one.
fn cut_torn_tail(file: &mut File) -> io::Result<()> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    // Scan backwards in chunks for the last newline.
    let mut end = len;
    let mut chunk = vec![0u8; 8192];
    let mut first = true;
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let size = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk[..size])?;
        if first && chunk[size - 1] == b'\n' {
            return Ok(());
        }
        first = false;
        if let Some(pos) = chunk[..size].iter().rposition(|&b| b == b'\n') {
            return file.set_len(start + pos as u64 + 1);
        }
        end = start;
    }
    file.set_len(0)
}
