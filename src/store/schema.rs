//! The schema and its migrations. `PRAGMA application_id` marks a paceline state; `PRAGMA
//! user_version` is the number of migrations applied. A database from a newer paceline is
//! refused rather than misread.
//!
//! It owns tables, indexes and migrations, and must not know what the rows mean to the engine or
//! the report.

use super::{Store, StoreError};

/// `PRAGMA application_id` of a paceline state ("PCLN").
pub const APPLICATION_ID: i32 = 0x5043_4c4e;

/// Migrations in order; `user_version` counts those applied.
const MIGRATIONS: &[&str] = &[
    // 1: the job, its runs, requests, attempts and results.
    "
    CREATE TABLE job (
        id           INTEGER PRIMARY KEY CHECK (id = 1),
        input_path   TEXT    NOT NULL,
        input_sha256 TEXT    NOT NULL,
        input_bytes  INTEGER NOT NULL,
        settings     TEXT    NOT NULL,
        output_path  TEXT    NOT NULL,
        total        INTEGER NOT NULL,
        skipped      INTEGER NOT NULL,
        created_at   INTEGER NOT NULL
    );
    CREATE TABLE runs (
        id             INTEGER PRIMARY KEY,
        pid            INTEGER NOT NULL,
        mode           TEXT    NOT NULL,
        started_at     INTEGER NOT NULL,
        last_commit_at INTEGER,
        ended_at       INTEGER,
        outcome        TEXT,
        finished       INTEGER NOT NULL DEFAULT 0,
        attempts       INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE requests (
        id                INTEGER PRIMARY KEY,
        custom_id         TEXT    NOT NULL UNIQUE,
        line              INTEGER NOT NULL,
        state             INTEGER NOT NULL DEFAULT 0,
        attempts          INTEGER NOT NULL DEFAULT 0,
        error_code        TEXT,
        prompt_tokens     INTEGER NOT NULL DEFAULT 0,
        completion_tokens INTEGER NOT NULL DEFAULT 0,
        result_seq        INTEGER
    );
    CREATE TABLE attempts (
        request_id        INTEGER NOT NULL,
        run               INTEGER NOT NULL,
        attempt           INTEGER NOT NULL,
        ended_at          INTEGER NOT NULL,
        key               TEXT    NOT NULL,
        status            INTEGER,
        latency_ms        INTEGER NOT NULL,
        waited_quota_ms   INTEGER NOT NULL,
        paused            INTEGER NOT NULL,
        waited_backoff_ms INTEGER NOT NULL,
        cause             TEXT,
        decision          TEXT    NOT NULL,
        retry_in_ms       INTEGER NOT NULL,
        PRIMARY KEY (request_id, run, attempt)
    ) WITHOUT ROWID;
    CREATE TABLE results (
        seq        INTEGER PRIMARY KEY,
        request_id INTEGER NOT NULL,
        line       TEXT    NOT NULL
    );
    ",
    // 2: what `paceline report` needs: each attempt's token charge (NULL in older states),
    // and each run's limits per key (configured or learned) and the keys it removed.
    "
    ALTER TABLE attempts ADD COLUMN tokens INTEGER;
    CREATE TABLE key_limits (
        run        INTEGER NOT NULL,
        key        TEXT    NOT NULL,
        model      TEXT    NOT NULL,
        dimension  TEXT    NOT NULL,
        per_minute INTEGER NOT NULL,
        burst      INTEGER NOT NULL,
        configured INTEGER NOT NULL,
        PRIMARY KEY (run, key, model, dimension)
    ) WITHOUT ROWID;
    CREATE TABLE key_removals (
        run    INTEGER NOT NULL,
        key    TEXT    NOT NULL,
        reason TEXT    NOT NULL,
        PRIMARY KEY (run, key)
    ) WITHOUT ROWID;
    ",
    // 3 (issue 15; its own entry so that a merge can renumber it): the shards of a job sent
    // through the providers' Batch APIs (`run --via batch`) and which requests each one holds.
    "
    CREATE TABLE shards (
        id          INTEGER PRIMARY KEY,
        model       TEXT    NOT NULL,
        endpoint    TEXT    NOT NULL,
        requests    INTEGER NOT NULL,
        tokens      INTEGER NOT NULL,
        state       TEXT    NOT NULL,
        file_id     TEXT,
        provider_id TEXT,
        status      TEXT,
        creating_at INTEGER,
        completed   INTEGER NOT NULL DEFAULT 0,
        failed      INTEGER NOT NULL DEFAULT 0,
        updated_at  INTEGER NOT NULL
    );
    CREATE TABLE shard_requests (
        shard      INTEGER NOT NULL,
        request_id INTEGER NOT NULL,
        active     INTEGER NOT NULL DEFAULT 1,
        PRIMARY KEY (shard, request_id)
    ) WITHOUT ROWID;
    CREATE INDEX shard_requests_by_request ON shard_requests (request_id, active);
",
    // 4: result lines compressed in blocks (zstd), one or more per commit, and the lines
    // `--retry-failed` took out of them; rows of `results` (written before) stay as they are.
    "
    CREATE TABLE result_blocks (
        first_seq INTEGER PRIMARY KEY,
        lines     INTEGER NOT NULL,
        data      BLOB    NOT NULL
    );
    CREATE TABLE removed_results (
        seq INTEGER PRIMARY KEY
    );
    ",
    // 5 (issue 15): the enqueued-token limits the batch path learned from the provider's
    // refusals, per key fingerprint and model (the lowest seen), and which attempts went in a
    // provider's batch (not counted against the live limits).
    "
    ALTER TABLE attempts ADD COLUMN batch INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE enqueued_limits (
        key        TEXT    NOT NULL,
        model      TEXT    NOT NULL,
        tokens     INTEGER NOT NULL,
        learned_at INTEGER NOT NULL,
        PRIMARY KEY (key, model)
    ) WITHOUT ROWID;
    ",
];

fn version(store: &Store) -> Result<(i32, i32), StoreError> {
    let read = |name: &str| {
        store
            .conn()
            .query_row(&format!("PRAGMA {name}"), [], |row| row.get::<_, i32>(0))
            .map_err(|e| store.err("read", e))
    };
    Ok((read("application_id")?, read("user_version")?))
}

/// Check that an existing database is a paceline state this version can read.
pub fn check(store: &Store) -> Result<(), StoreError> {
    let (app, version) = version(store).map_err(|e| match e {
        StoreError::Sql { source, .. } => StoreError::NotState {
            path: store.path().to_path_buf(),
            detail: format!(": {source}"),
        },
        other => other,
    })?;
    if app != APPLICATION_ID {
        return Err(StoreError::NotState {
            path: store.path().to_path_buf(),
            detail: String::new(),
        });
    }
    if version > MIGRATIONS.len() as i32 {
        return Err(StoreError::NotState {
            path: store.path().to_path_buf(),
            detail: format!(
                ": it was written by a newer paceline (schema {version}; this one knows up to {})",
                MIGRATIONS.len()
            ),
        });
    }
    Ok(())
}

/// Bring a database (new or existing) up to the current schema.
pub fn migrate(store: &mut Store) -> Result<(), StoreError> {
    let (app, version) = version(store)?;
    let fresh = app == 0 && version == 0;
    if !fresh {
        check(store)?;
    }
    if version as usize >= MIGRATIONS.len() {
        return Ok(());
    }
    let path = store.path().to_path_buf();
    let err = |source| StoreError::Sql {
        path: path.clone(),
        action: "create",
        source,
    };
    let tx = store.conn_mut().transaction().map_err(err)?;
    if fresh {
        let has_tables: i64 = tx
            .query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))
            .map_err(err)?;
        if has_tables > 0 {
            return Err(StoreError::NotState {
                path: path.clone(),
                detail: " (it is another application's SQLite database)".into(),
            });
        }
        tx.pragma_update(None, "application_id", APPLICATION_ID)
            .map_err(err)?;
    }
    for sql in &MIGRATIONS[version as usize..] {
        tx.execute_batch(sql).map_err(err)?;
    }
    tx.pragma_update(None, "user_version", MIGRATIONS.len() as i32)
        .map_err(err)?;
    tx.commit().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    /// A state as paceline wrote it before schema 2: one request with one attempt.
    fn schema_1_state(path: &std::path::Path) {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "application_id", APPLICATION_ID)
            .unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute_batch(
            "INSERT INTO requests (id, custom_id, line, state, attempts) VALUES (1, 'r0', 1, 2, 1);
             INSERT INTO attempts VALUES (1, 1, 1, 1000000, 'K#1a2b3c4d', 200, 250, 0, 0, 0,
                                          NULL, 'succeeded', 0);",
        )
        .unwrap();
    }

    #[test]
    fn a_schema_1_state_is_reported_as_is_and_migrated_by_a_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.paceline.db");
        schema_1_state(&path);

        let reader = Store::open_existing(&path).unwrap();
        let data = crate::report::data::load(&reader).unwrap();
        assert_eq!(data.totals.attempts, 1);
        assert_eq!(data.totals.tokens, None);
        assert_eq!(data.series.tokens_per_min, None);
        assert_eq!(data.totals.latency_p50_ms, Some(250));
        assert!(data.limits.requests_per_min.is_none());
        drop(reader);

        let mut writer = Store::open(&path).unwrap();
        assert_eq!(
            version(&writer).unwrap(),
            (APPLICATION_ID, MIGRATIONS.len() as i32)
        );
        let tokens: Option<i64> = writer
            .conn()
            .query_row("SELECT tokens FROM attempts", [], |row| row.get(0))
            .unwrap();
        assert_eq!(tokens, None);
        assert_eq!(
            crate::store::keys::load(&writer).unwrap(),
            (Vec::new(), Vec::new())
        );
        migrate(&mut writer).unwrap();
        assert_eq!(version(&writer).unwrap().1, MIGRATIONS.len() as i32);
    }
}
