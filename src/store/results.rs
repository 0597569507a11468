//! Results: the exact output line of every finished request, in commit order (`seq`). The output
//! file is these lines, in this order ([`super::output`]).
//!
//! **Compressed in blocks, and kept whole.** The lines one transaction of the writer adds are
//! stored together as one zstd frame, a row of `result_blocks` (a new block starts past
//! [`BLOCK_BYTES`] of text): line `first_seq + i` of the block is its `i`-th line. Lines of one
//! job share most of their bytes (field names, the model, the ids' prefixes, the usage's shape),
//! which a frame of a few hundred lines finds and a single 700-byte line cannot: a block of 300
//! mock results takes ~66 bytes a line, one frame per line ~95 even with a dictionary trained
//! on the job's first 1,000 lines (plus ~13 bytes of SQLite row for each), and a dictionary
//! gains a block of 100 lines only 4 % — so there is none. Keeping every line whole keeps the
//! store the truth: reconciliation can rebuild any part of the output from it alone.
//!
//! `--retry-failed` takes a line out by recording its `seq` in `removed_results` (the block is
//! left as it is). States written before blocks keep their lines as rows of `results`, read
//! first (their `seq`s all come before the first block's).
//!
//! It must not know what a line says.

use super::{Store, StoreError};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

/// zstd's compression level (its default: fast, and within a few percent of the higher levels
/// on these blocks).
const LEVEL: i32 = 3;
/// A block is closed once it holds this much text (so reading one back never needs much
/// memory); a single longer line makes a block of its own.
pub const BLOCK_BYTES: usize = 1 << 20;
/// Largest block read back (a bound on what a damaged frame can make a reader allocate).
const MAX_BLOCK: u64 = 1 << 31;

fn to_sql(e: std::io::Error) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(e))
}

fn damaged(detail: impl Into<String>) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Blob,
        Box::new(std::io::Error::other(format!(
            "a stored block of results is damaged: {}",
            detail.into()
        ))),
    )
}

/// Gathers the lines of one transaction into blocks.
#[derive(Default)]
pub struct BlockWriter {
    compressor: Option<zstd::bulk::Compressor<'static>>,
    /// The lines of the open block, each ending in a newline.
    text: Vec<u8>,
    /// How many.
    lines: i64,
    /// The seq of its first line, and of the next line.
    first: i64,
    next: Option<i64>,
}

impl std::fmt::Debug for BlockWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockWriter")
            .field("lines", &self.lines)
            .field("next", &self.next)
            .finish()
    }
}

impl BlockWriter {
    /// Start the lines of a new transaction (whatever an earlier one left unfinished, because
    /// it failed, is forgotten).
    pub fn begin(&mut self) {
        self.next = None;
        self.text.clear();
        self.lines = 0;
    }

    /// Add `line` (which holds no newline) to the open block of transaction `tx`; returns its
    /// place in commit order. [`BlockWriter::finish`] must be called before `tx` commits.
    pub fn add(&mut self, tx: &Transaction<'_>, line: &str) -> rusqlite::Result<i64> {
        let seq = match self.next {
            Some(seq) => seq,
            None => {
                let seq = next_seq(tx)?;
                self.first = seq;
                seq
            }
        };
        self.text.extend_from_slice(line.as_bytes());
        self.text.push(b'\n');
        self.lines += 1;
        self.next = Some(seq + 1);
        if self.text.len() >= BLOCK_BYTES {
            self.flush(tx)?;
            self.first = seq + 1;
        }
        Ok(seq)
    }

    /// Store the open block; the next [`BlockWriter::add`] reads the next seq from the store
    /// again (so a transaction rolled back leaves nothing behind here).
    pub fn finish(&mut self, tx: &Transaction<'_>) -> rusqlite::Result<()> {
        let stored = self.flush(tx);
        self.begin();
        stored
    }

    fn flush(&mut self, tx: &Transaction<'_>) -> rusqlite::Result<()> {
        if self.lines == 0 {
            return Ok(());
        }
        let compressor = match &mut self.compressor {
            Some(compressor) => compressor,
            none => none.insert(zstd::bulk::Compressor::new(LEVEL).map_err(to_sql)?),
        };
        let frame = compressor.compress(&self.text).map_err(to_sql)?;
        tx.prepare_cached(
            "INSERT INTO result_blocks (first_seq, lines, data) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![self.first, self.lines, frame])?;
        self.text.clear();
        self.lines = 0;
        Ok(())
    }
}

/// The seq the next stored line gets: after every line of `results` and of `result_blocks`.
fn next_seq(conn: &Connection) -> rusqlite::Result<i64> {
    let rows: i64 = conn.query_row("SELECT coalesce(max(seq), 0) FROM results", [], |row| {
        row.get(0)
    })?;
    let blocks: Option<i64> = conn
        .query_row(
            "SELECT first_seq + lines - 1 FROM result_blocks ORDER BY first_seq DESC LIMIT 1",
            [],
            |row| row.get(0),
        )
        .optional()?;
    Ok(rows.max(blocks.unwrap_or(0)) + 1)
}

/// The lines of a block's frame; `lines` is how many it must hold.
fn unpack(frame: &[u8], lines: i64) -> rusqlite::Result<Vec<u8>> {
    let size = zstd::zstd_safe::get_frame_content_size(frame)
        .ok()
        .flatten()
        .filter(|&n| n <= MAX_BLOCK)
        .ok_or_else(|| damaged("no size"))?;
    let text = zstd::bulk::decompress(frame, size as usize).map_err(|e| damaged(e.to_string()))?;
    let count = text.iter().filter(|&&b| b == b'\n').count() as i64;
    if count != lines || text.last().is_some_and(|&b| b != b'\n') {
        return Err(damaged(format!("{count} lines where {lines} were stored")));
    }
    Ok(text)
}

fn utf8(bytes: &[u8]) -> rusqlite::Result<&str> {
    std::str::from_utf8(bytes).map_err(|e| damaged(e.to_string()))
}

/// Call `each` with every stored line in commit order (without its newline), leaving out the
/// lines `--retry-failed` removed.
pub fn each_line<E: From<StoreError>>(
    store: &Store,
    mut each: impl FnMut(&str) -> Result<(), E>,
) -> Result<(), E> {
    let read = |e| store.err("read", e);
    let conn = store.conn();
    let mut legacy = conn
        .prepare("SELECT line FROM results ORDER BY seq")
        .map_err(read)?;
    let mut rows = legacy.query([]).map_err(read)?;
    while let Some(row) = rows.next().map_err(read)? {
        let line: String = row.get(0).map_err(read)?;
        each(&line)?;
    }
    let mut removed = conn
        .prepare("SELECT seq FROM removed_results ORDER BY seq")
        .map_err(read)?;
    let mut removed = removed
        .query_map([], |row| row.get::<_, i64>(0))
        .map_err(read)?
        .peekable();
    let mut blocks = conn
        .prepare("SELECT first_seq, lines, data FROM result_blocks ORDER BY first_seq")
        .map_err(read)?;
    let mut rows = blocks.query([]).map_err(read)?;
    while let Some(row) = rows.next().map_err(read)? {
        let first: i64 = row.get(0).map_err(read)?;
        let count: i64 = row.get(1).map_err(read)?;
        let frame = row
            .get_ref(2)
            .and_then(|v| Ok(v.as_blob()?))
            .map_err(read)?;
        let text = unpack(frame, count).map_err(read)?;
        let lines = text[..text.len().saturating_sub(1)].split(|&b| b == b'\n');
        for (seq, line) in (first..).zip(lines) {
            let mut skip = false;
            while let Some(next) = removed.peek() {
                match next {
                    Ok(r) if *r < seq => {
                        removed.next();
                    }
                    Ok(r) => {
                        skip = *r == seq;
                        break;
                    }
                    Err(_) => {
                        if let Some(Err(e)) = removed.next() {
                            return Err(read(e).into());
                        }
                    }
                }
            }
            if !skip {
                each(utf8(line).map_err(read)?)?;
            }
        }
    }
    Ok(())
}

/// The output line stored at `seq` (`None` if there is none, or `--retry-failed` removed it).
pub fn line(store: &Store, seq: i64) -> Result<Option<String>, StoreError> {
    let read = |e| store.err("read", e);
    let conn = store.conn();
    let legacy: Option<String> = conn
        .query_row(
            "SELECT line FROM results WHERE seq = ?1",
            params![seq],
            |row| row.get(0),
        )
        .optional()
        .map_err(read)?;
    if legacy.is_some() {
        return Ok(legacy);
    }
    let removed: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM removed_results WHERE seq = ?1)",
            params![seq],
            |row| row.get(0),
        )
        .map_err(read)?;
    if removed {
        return Ok(None);
    }
    let block: Option<(i64, i64, Vec<u8>)> = conn
        .query_row(
            "SELECT first_seq, lines, data FROM result_blocks WHERE first_seq <= ?1
             ORDER BY first_seq DESC LIMIT 1",
            params![seq],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .optional()
        .map_err(read)?;
    let Some((first, count, frame)) = block else {
        return Ok(None);
    };
    if seq >= first + count {
        return Ok(None);
    }
    let text = unpack(&frame, count).map_err(read)?;
    let index = (seq - first) as usize;
    let line = text[..text.len().saturating_sub(1)]
        .split(|&b| b == b'\n')
        .nth(index)
        .map(|line| utf8(line).map(str::to_string))
        .transpose()
        .map_err(read)?;
    Ok(line)
}

/// `--retry-failed`: take the results of the requests in `state` (failed) out of the output.
pub fn remove_of_state(tx: &Transaction<'_>, state: i64) -> rusqlite::Result<()> {
    tx.execute(
        "DELETE FROM results WHERE seq IN
           (SELECT result_seq FROM requests WHERE state = ?1 AND result_seq IS NOT NULL)",
        params![state],
    )?;
    tx.execute(
        "INSERT OR IGNORE INTO removed_results (seq)
           SELECT result_seq FROM requests WHERE state = ?1 AND result_seq IS NOT NULL",
        params![state],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        (dir, store)
    }

    fn all(store: &Store) -> Vec<String> {
        let mut out = Vec::new();
        each_line::<StoreError>(store, |line| {
            out.push(line.to_string());
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn lines_come_back_in_commit_order_across_transactions_and_blocks() {
        let (_dir, mut store) = store();
        let long = "x".repeat(BLOCK_BYTES / 2);
        let mut writer = BlockWriter::default();
        let mut want = Vec::new();
        for round in 0..3 {
            let tx = store.conn_mut().transaction().unwrap();
            for i in 0..5 {
                let line = if i % 2 == 1 {
                    format!("{long}{round}")
                } else {
                    format!("{{\"round\":{round},\"i\":{i}}}")
                };
                let seq = writer.add(&tx, &line).unwrap();
                assert_eq!(seq, want.len() as i64 + 1);
                want.push(line);
            }
            writer.finish(&tx).unwrap();
            tx.commit().unwrap();
        }
        let blocks: i64 = store
            .conn()
            .query_row("SELECT count(*) FROM result_blocks", [], |r| r.get(0))
            .unwrap();
        // Two long lines fill a block: each transaction's lines make two.
        assert_eq!(blocks, 6);
        assert_eq!(all(&store), want);
        for (i, wanted) in want.iter().enumerate() {
            assert_eq!(line(&store, i as i64 + 1).unwrap().as_ref(), Some(wanted));
        }
        assert_eq!(line(&store, want.len() as i64 + 1).unwrap(), None);
    }

    #[test]
    fn a_rolled_back_transaction_leaves_no_gap_and_no_line() {
        let (_dir, mut store) = store();
        let mut writer = BlockWriter::default();
        let tx = store.conn_mut().transaction().unwrap();
        assert_eq!(writer.add(&tx, "a").unwrap(), 1);
        writer.finish(&tx).unwrap();
        drop(tx);
        let tx = store.conn_mut().transaction().unwrap();
        assert_eq!(writer.add(&tx, "b").unwrap(), 1);
        writer.finish(&tx).unwrap();
        tx.commit().unwrap();
        assert_eq!(all(&store), ["b"]);
    }

    #[test]
    fn a_removed_line_is_left_out_and_older_rows_come_first() {
        let (_dir, mut store) = store();
        store
            .conn()
            .execute_batch(
                "INSERT INTO results (seq, request_id, line) VALUES (1, 1, 'old1'), (2, 2, 'old2');",
            )
            .unwrap();
        let mut writer = BlockWriter::default();
        let tx = store.conn_mut().transaction().unwrap();
        for line in ["n3", "n4", "n5"] {
            writer.add(&tx, line).unwrap();
        }
        writer.finish(&tx).unwrap();
        tx.execute("INSERT INTO removed_results (seq) VALUES (4)", [])
            .unwrap();
        tx.commit().unwrap();
        assert_eq!(all(&store), ["old1", "old2", "n3", "n5"]);
        assert_eq!(line(&store, 4).unwrap(), None);
        assert_eq!(line(&store, 5).unwrap().as_deref(), Some("n5"));
        assert_eq!(line(&store, 2).unwrap().as_deref(), Some("old2"));
    }

    #[test]
    fn a_damaged_block_is_an_error_not_a_wrong_line() {
        let (_dir, mut store) = store();
        let mut writer = BlockWriter::default();
        let tx = store.conn_mut().transaction().unwrap();
        writer.add(&tx, "a").unwrap();
        writer.add(&tx, "b").unwrap();
        writer.finish(&tx).unwrap();
        tx.execute("UPDATE result_blocks SET lines = 3", [])
            .unwrap();
        tx.commit().unwrap();
        let err = each_line::<StoreError>(&store, |_| Ok(())).unwrap_err();
        assert!(err.to_string().contains("damaged"), "{err}");
        store
            .conn()
            .execute("UPDATE result_blocks SET data = x'00'", [])
            .unwrap();
        assert!(line(&store, 1).is_err());
    }
}
