//! The output file, derived from the store: reconciliation on start, appending during a run.
//!
//! The output must always be the store's result lines in commit order. During a run the writer
//! appends each batch right after committing it, so after a crash the file is a prefix of that
//! sequence, perhaps ending in a torn line. [`reconcile`] walks the file and the stored lines
//! together, keeps the longest prefix of complete lines that match byte for byte, cuts the file
//! there and appends every stored line after it. That repairs a torn last line, fills in what
//! was committed but not yet written, and drops any line the store does not hold (the store is
//! the truth: such a request is still pending there and will be sent again).
//!
//! It must not know the output format: lines are stored and written as the writer made them.

use super::{Store, StoreError, results};
use crate::batch::OutputError;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// What reconciliation found and did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Lines already in the file and kept.
    pub kept: u64,
    /// Stored results appended because the file lacked them.
    pub appended: u64,
    /// Complete lines removed because the store holds no such result at that place.
    pub dropped: u64,
    /// Whether a torn last line (no newline) was cut.
    pub torn: bool,
}

impl Reconciled {
    /// Whether the file had to change.
    pub fn repaired(&self) -> bool {
        self.appended > 0 || self.dropped > 0 || self.torn
    }
}

/// Appends result lines to the output file.
#[derive(Debug)]
pub struct OutputAppender {
    path: PathBuf,
    out: BufWriter<File>,
}

impl OutputAppender {
    /// The output file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one line (a newline is added).
    pub fn append(&mut self, line: &str) -> Result<(), OutputError> {
        self.out
            .write_all(line.as_bytes())
            .and_then(|()| self.out.write_all(b"\n"))
            .map_err(|source| self.write_err(source))
    }

    /// Push buffered lines to the operating system (enough to survive a crash of the process).
    pub fn flush(&mut self) -> Result<(), OutputError> {
        self.out.flush().map_err(|source| self.write_err(source))
    }

    /// Flush and `fsync`, so the file survives a power cut too.
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

/// Any error of reconciliation.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The output file.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// The store.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Bring the output at `path` (created if missing) up to date with the store, and return an
/// appender positioned at its end.
pub fn reconcile(
    store: &Store,
    path: &Path,
) -> Result<(OutputAppender, Reconciled), ReconcileError> {
    let open_err = |source| OutputError::Open {
        path: path.to_path_buf(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(open_err)?;
    let len = file.metadata().map_err(open_err)?.len();
    // Read no further than the length seen now (a device such as /dev/full never ends).
    let mut reader = BufReader::with_capacity(256 * 1024, (&file).take(len));
    let mut report = Reconciled::default();
    let mut offset = 0u64;
    let mut buf = Vec::with_capacity(4096);
    // Walk the stored lines: while the file holds each at its place, keep it; from the first
    // one it does not, cut the file there and append that line and every one after it.
    let mut appender: Option<OutputAppender> = None;
    results::each_line(store, |stored| -> Result<(), ReconcileError> {
        if appender.is_none() {
            buf.clear();
            let n = reader.read_until(b'\n', &mut buf).map_err(open_err)?;
            let matches = n > 0 && buf.last() == Some(&b'\n') && &buf[..n - 1] == stored.as_bytes();
            if matches {
                offset += n as u64;
                report.kept += 1;
                return Ok(());
            }
            appender = Some(cut(&file, path, offset, len, &mut buf, &mut report)?);
        }
        if let Some(appender) = appender.as_mut() {
            appender.append(stored)?;
            report.appended += 1;
        }
        Ok(())
    })?;
    drop(reader);
    let mut appender = match appender {
        Some(appender) => appender,
        None => cut(&file, path, offset, len, &mut buf, &mut report)?,
    };
    appender.flush()?;
    Ok((appender, report))
}

/// Cut `file` at `offset` (counting what is cut) and return an appender at its new end.
fn cut(
    file: &File,
    path: &Path,
    offset: u64,
    len: u64,
    buf: &mut Vec<u8>,
    report: &mut Reconciled,
) -> Result<OutputAppender, OutputError> {
    if offset < len {
        // Complete lines are dropped, a last line without newline is torn.
        count_cut(file, offset, len, buf, report).map_err(|source| OutputError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        file.set_len(offset).map_err(|source| OutputError::Write {
            path: path.to_path_buf(),
            source,
        })?;
    }
    let handle = file.try_clone().map_err(|source| OutputError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(OutputAppender {
        path: path.to_path_buf(),
        out: BufWriter::with_capacity(256 * 1024, handle),
    })
}

/// Count the complete lines (and a torn tail) between `from` and `to` in `file`.
fn count_cut(
    file: &File,
    from: u64,
    to: u64,
    buf: &mut Vec<u8>,
    report: &mut Reconciled,
) -> io::Result<()> {
    use std::io::{Seek, SeekFrom};
    let mut handle = file.try_clone()?;
    handle.seek(SeekFrom::Start(from))?;
    let mut reader = BufReader::new(handle.take(to - from));
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', buf)?;
        if n == 0 {
            return Ok(());
        }
        if buf.last() == Some(&b'\n') {
            report.dropped += 1;
        } else {
            report.torn = true;
        }
    }
}
