//! What each run knew about its keys when it ended: the limits in force per key, model and
//! dimension (configured, or learned from the provider's headers), and the keys it took out of
//! rotation. Read by `paceline report`; keys appear only as fingerprints.
//!
//! It reads the key pool's quotas once, when the run closes, and must not know how limits are
//! learned or enforced.

use super::{Store, StoreError};
use crate::quota::{Dimension, QuotaConfig};
use crate::upstream::KeyPool;
use rusqlite::params;
use serde::Serialize;

/// One limit of one key's quota for one model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyLimit {
    /// The run that recorded it.
    pub run: i64,
    /// Key fingerprint.
    pub key: String,
    /// The model the quota is for.
    pub model: String,
    /// `requests`, `tokens`, `input_tokens` or `output_tokens`.
    pub dimension: String,
    /// Units per minute.
    pub per_minute: u64,
    /// Most units at once.
    pub burst: u64,
    /// Whether it is the configured limit (else the provider's headers taught another).
    pub configured: bool,
}

/// A key a run took out of rotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyRemoval {
    /// The run that removed it.
    pub run: i64,
    /// Key fingerprint.
    pub key: String,
    /// Why (the provider's error code and message).
    pub reason: String,
}

/// The stored name of a dimension.
pub fn dimension_name(dimension: Dimension) -> &'static str {
    match dimension {
        Dimension::Requests => "requests",
        Dimension::Tokens => "tokens",
        Dimension::InputTokens => "input_tokens",
        Dimension::OutputTokens => "output_tokens",
    }
}

/// What `pool` knows at the end of run `run`; `configs` are the keys' configured limits by
/// fingerprint.
pub fn snapshot(
    pool: &KeyPool,
    configs: &[(String, QuotaConfig)],
    run: i64,
) -> (Vec<KeyLimit>, Vec<KeyRemoval>) {
    let mut limits = Vec::new();
    for (key, model, quota) in pool.quotas() {
        let config = configs.iter().find(|(k, _)| *k == key).map(|(_, c)| *c);
        for (dimension, limit) in Dimension::ALL.iter().zip(quota.limits()) {
            let Some((per_minute, burst)) = limit else {
                continue;
            };
            limits.push(KeyLimit {
                run,
                key: key.clone(),
                model: model.clone(),
                dimension: dimension_name(*dimension).to_string(),
                per_minute,
                burst,
                configured: config
                    .and_then(|c| c.get(*dimension))
                    .is_some_and(|spec| spec.per_minute == per_minute),
            });
        }
    }
    let removals = pool
        .removed()
        .into_iter()
        .map(|(key, reason)| KeyRemoval { run, key, reason })
        .collect();
    (limits, removals)
}

/// Record what a run knew about its keys.
pub fn record(
    store: &Store,
    limits: &[KeyLimit],
    removals: &[KeyRemoval],
) -> Result<(), StoreError> {
    let write = |e| store.err("write", e);
    let conn = store.conn();
    for l in limits {
        conn.execute(
            "INSERT OR REPLACE INTO key_limits
                 (run, key, model, dimension, per_minute, burst, configured)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                l.run,
                l.key,
                l.model,
                l.dimension,
                l.per_minute as i64,
                l.burst as i64,
                l.configured
            ],
        )
        .map_err(write)?;
    }
    for r in removals {
        conn.execute(
            "INSERT OR REPLACE INTO key_removals (run, key, reason) VALUES (?1, ?2, ?3)",
            params![r.run, r.key, r.reason],
        )
        .map_err(write)?;
    }
    Ok(())
}

/// Whether the state has the key tables (states written before schema 2 do not, and a
/// read-only reader does not migrate them).
/// Whether the state has the `key_limits` table (states written before it have not).
pub(super) fn present(store: &Store) -> Result<bool, StoreError> {
    store
        .conn()
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = 'key_limits'",
            [],
            |row| row.get::<_, i64>(0),
        )
        .map(|n| n > 0)
        .map_err(|e| store.err("read", e))
}

/// Every recorded limit and removal, oldest run first; empty for older states.
pub fn load(store: &Store) -> Result<(Vec<KeyLimit>, Vec<KeyRemoval>), StoreError> {
    if !present(store)? {
        return Ok((Vec::new(), Vec::new()));
    }
    let read = |e| store.err("read", e);
    let conn = store.conn();
    let mut stmt = conn
        .prepare(
            "SELECT run, key, model, dimension, per_minute, burst, configured FROM key_limits
             ORDER BY run, key, model, dimension",
        )
        .map_err(read)?;
    let limits = stmt
        .query_map([], |row| {
            Ok(KeyLimit {
                run: row.get(0)?,
                key: row.get(1)?,
                model: row.get(2)?,
                dimension: row.get(3)?,
                per_minute: row.get::<_, i64>(4)? as u64,
                burst: row.get::<_, i64>(5)? as u64,
                configured: row.get(6)?,
            })
        })
        .map_err(read)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read)?;
    let mut stmt = conn
        .prepare("SELECT run, key, reason FROM key_removals ORDER BY run, key")
        .map_err(read)?;
    let removals = stmt
        .query_map([], |row| {
            Ok(KeyRemoval {
                run: row.get(0)?,
                key: row.get(1)?,
                reason: row.get(2)?,
            })
        })
        .map_err(read)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read)?;
    Ok((limits, removals))
}
