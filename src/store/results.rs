//! Results: the exact output line of every finished request, in commit order (`seq`). The output
//! file is these lines, in this order ([`super::output`]).
//!
//! It must not know what a line says.

use super::{Store, StoreError};
use rusqlite::{OptionalExtension, Transaction, params};

/// Record the output line of request row `request_id`; returns its place in commit order.
pub fn insert(tx: &Transaction<'_>, request_id: i64, line: &str) -> rusqlite::Result<i64> {
    tx.prepare_cached("INSERT INTO results (request_id, line) VALUES (?1, ?2)")?
        .execute(params![request_id, line])?;
    Ok(tx.last_insert_rowid())
}

/// The output line stored at `seq`.
pub fn line(store: &Store, seq: i64) -> Result<Option<String>, StoreError> {
    store
        .conn()
        .query_row(
            "SELECT line FROM results WHERE seq = ?1",
            params![seq],
            |row| row.get(0),
        )
        .optional()
        .map_err(|e| store.err("read", e))
}
